"""simval.plan against ppi-python's power analysis, its own variance formula, and a
seeded simulation of the planned study."""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import binomial_tolerance

from simval.errors import OptionError
from simval.plan import PLAN_COLUMNS, plan
from simval.ppi import Rows, ppi_fit
from simval.rectify import rectify

sys.path.insert(0, str(Path(__file__).parent))
from test_rectify import (
    OBSERVATIONAL_FORMULAS,
    STUDY,
    WorldSimulator,
    observational_files,
    people,
)


@pytest.fixture(scope="module")
def pilot():
    """A rectify result on 300 humans and a persona frame of 1,500."""
    rng = np.random.default_rng(1)
    frame = people(rng, 1500)[["x", "z", "arm"]]
    return rectify(
        STUDY, people(rng, 300), WorldSimulator("good"), unlabeled=frame,
        progress=False,
    )  # fmt: skip


def with_components(pilot, *, correlation: float):
    """The pilot with one term whose components are standard PPI's (v = ṽ = σ² = 1)."""
    components = pd.DataFrame(
        [{"formula": "y ~ x", "term": "x", "n_human": 100, "n_unlabeled": 1000,
          "lam": 0.5, "human": 1.0, "cross": correlation, "predicted": 1.0,
          "unlabeled": 1.0, "ppi_correlation": correlation}]
    )  # fmt: skip
    return dataclasses.replace(pilot, components=components)


@pytest.mark.parametrize("correlation", [0.3, 0.6, 0.9])
@pytest.mark.parametrize("costs", [(10.0, 0.1), (1.0, 0.2)])
def test_cheapest_mix_equals_ppi_python(pilot, correlation, costs):
    """For standard PPI's components, the cheapest mix reaching an effective sample size
    of 500 is ppi-python's ppi_power (its closed form, rounded): n within 2%, N within
    5% (near the optimum the cost hardly depends on N, and ppi-python's rounding
    falls short of the target by up to a respondent), the cost within 0.5%, and its
    effective sample size at least 500."""
    from ppi_py import ppi_power

    cost_human, cost_simulated = costs
    found = plan(
        with_components(pilot, correlation=correlation), cost_human=cost_human,
        cost_simulated=cost_simulated, effective_n=500,
    ).table.iloc[0]  # fmt: skip
    theirs = ppi_power(
        correlation, cost_X=0, cost_Y=cost_human, cost_Yhat=cost_simulated,
        effective_n=500,
    )  # fmt: skip
    assert found["n_human"] == pytest.approx(theirs["n"], rel=0.02, abs=1)
    if theirs["N"]:
        assert found["n_simulated"] == pytest.approx(theirs["N"], rel=0.05, abs=1)
    else:
        assert found["n_simulated"] == 0
    assert found["cost"] == pytest.approx(theirs["cost"], rel=0.005)
    assert found["effective_n"] >= 500 - 1e-9
    assert found["saving"] == pytest.approx(
        1 - found["cost"] / found["humans_only_cost"]
    )


@pytest.mark.parametrize("correlation", [0.5, 0.8])
def test_most_precise_mix_within_a_budget_equals_ppi_python(pilot, correlation):
    """Within a budget of 10,000 (a human 10, a simulated respondent 0.5), the most
    precise mix is ppi-python's (its rounding aside) and costs at most the budget."""
    from ppi_py import ppi_power

    found = plan(
        with_components(pilot, correlation=correlation), cost_human=10,
        cost_simulated=0.5, budget=10_000,
    ).table.iloc[0]  # fmt: skip
    theirs = ppi_power(correlation, 0, 10, 0.5, budget=10_000)
    assert found["cost"] <= 10_000
    assert found["n_human"] == pytest.approx(theirs["n"], rel=0.01, abs=1)
    assert found["n_simulated"] == pytest.approx(theirs["N"], rel=0.01, abs=2)
    assert found["effective_n"] == pytest.approx(theirs["effective_n"], rel=0.005)


def test_no_correlation_plans_humans_only(pilot):
    found = plan(
        with_components(pilot, correlation=0.0), cost_human=5, cost_simulated=0.1,
        effective_n=120,
    ).table.iloc[0]  # fmt: skip
    assert (found["n_human"], found["n_simulated"]) == (120, 0)
    assert found["saving"] == 0


def test_components_give_the_fit_its_own_variance():
    """Components.variance at the fit's λ, n and N is the diagonal of its covariance."""
    rng = np.random.default_rng(2)
    n, N = 300, 900
    X = np.column_stack([np.ones(n + N), rng.normal(size=n + N)])
    y = X @ [1.0, 2.0] + rng.normal(size=n + N)
    guess = y + rng.normal(0, 1, n + N)
    estimate = ppi_fit(
        human=Rows(X[:n], y[:n]), predicted=Rows(X[:n], guess[:n]),
        unlabeled=Rows(X[n:], guess[n:]), family="ols", covariates_predicted=True,
    )  # fmt: skip
    np.testing.assert_allclose(
        estimate.components.variance(lam=estimate.lam, n=n, N=N),
        np.diag(estimate.cov),
        rtol=1e-10,
    )


def test_the_planned_study_has_the_planned_precision():
    """Plan from a pilot of 300, run 300 studies of the planned size: the rectified
    estimates' spread and their mean standard error are the plan's within 10%, and
    a half-width target is met on average."""
    rng = np.random.default_rng(3)
    world = functools.partial(_world, rng)
    human, guess = world(300)
    extra, guess_extra = world(3000)
    estimate = ppi_fit(
        human=human, predicted=Rows(human.X, guess), unlabeled=Rows(extra.X, guess_extra),
        family="ols", covariates_predicted=False,
    )  # fmt: skip
    parts = estimate.components
    components = pd.DataFrame(
        [{"formula": "y ~ x", "term": "x", "n_human": 300, "n_unlabeled": 3000,
          "lam": estimate.lam, **{k: getattr(parts, k)[1] for k in
          ("human", "cross", "predicted", "unlabeled")},
          "ppi_correlation": parts.correlation[1]}]
    )  # fmt: skip
    pilot = dataclasses.replace(_bare_pilot(), components=components)
    chosen = plan(pilot, cost_human=10, cost_simulated=0.5, half_width=0.03).table
    n, N = int(chosen["n_human"].iloc[0]), int(chosen["n_simulated"].iloc[0])
    assert N > 0
    slopes, errors = [], []
    for _ in range(300):
        human, guess = world(n)
        extra, guess_extra = world(N)
        fitted = ppi_fit(
            human=human, predicted=Rows(human.X, guess),
            unlabeled=Rows(extra.X, guess_extra), family="ols",
            covariates_predicted=False,
        )  # fmt: skip
        slopes.append(fitted.coef[1])
        errors.append(fitted.std_errors()[1])
    planned = 0.03 / 1.959963984540054  # the planned standard error
    assert np.std(slopes) == pytest.approx(planned, rel=0.1)
    assert np.mean(errors) == pytest.approx(planned, rel=0.1)


def pilot_components(rng, *, n: int, N: int) -> dict:
    """The slope's components (with their errors) from a pilot of the planned-study
    world: n humans, N simulated-only rows, λ = 0.5."""
    human, guess = _world(rng, n)
    extra, guess_extra = _world(rng, N)
    parts = ppi_fit(
        human=human, predicted=Rows(human.X, guess),
        unlabeled=Rows(extra.X, guess_extra), family="ols",
        covariates_predicted=False, lam=0.5,
    ).components  # fmt: skip
    names = ("human", "cross", "predicted", "unlabeled", "human_error",
             "correlation_error")  # fmt: skip
    return {
        "formula": "y ~ x", "term": "x", "n_human": n, "n_unlabeled": N, "lam": 0.5,
        **{k: float(getattr(parts, k)[1]) for k in names},
        "ppi_correlation": float(parts.correlation[1]),
    }  # fmt: skip


def _world(rng, m: int):
    """y = 1 + 0.5x + e; the simulator's answer shares most of e (ρ about 0.84)."""
    x = rng.normal(size=m)
    y = 1 + 0.5 * x + rng.normal(size=m)
    guess = 1 + 0.4 * x + 0.8 * (y - 1 - 0.5 * x) + rng.normal(0, 0.5, m)
    return Rows(np.column_stack([np.ones(m), x]), y), guess


@pytest.mark.parametrize("target", [{"effective_n": 1000}, {"half_width": 0.05}])
def test_safe_sizes_reach_the_target_at_the_stated_assurance(target):
    """300 pilots of 300 humans (and 3,000 simulated rows) of one world, each planned
    for one target: the true precision (from the world's components, estimated on
    200,000 rows each) at the safe sizes reaches the target in at least 90% of them
    (within the binomial band), at the pilot-estimate sizes in about half (measured
    0.46 for effective_n and 0.39 for half_width; the safe rates 0.900 and 0.997)."""
    from simval.plan import _reached

    rng = np.random.default_rng(5)
    truth = pilot_components(rng, n=200_000, N=200_000)
    goal = target.get("effective_n") or truth["human"] * (1.959963984540054 / 0.05) ** 2
    bare = _bare_pilot()
    reached = {"point": 0, "safe": 0}
    pilots = 300
    for _ in range(pilots):
        found = plan(
            dataclasses.replace(
                bare, components=pd.DataFrame([pilot_components(rng, n=300, N=3000)])
            ),
            cost_human=10, cost_simulated=0.5, alpha=0.05, **target,
        ).table.iloc[0]  # fmt: skip
        for kind, prefix in (("point", ""), ("safe", "safe_")):
            n, N = found[f"{prefix}n_human"], found[f"{prefix}n_simulated"]
            reached[kind] += _reached(truth, n=n, N=N) >= goal
    assert reached["safe"] / pilots >= 0.9 - binomial_tolerance(0.9, pilots)
    assert reached["point"] / pilots < 0.6


def _bare_pilot():
    """A small real Rectified whose components a test replaces."""
    rng = np.random.default_rng(4)
    return rectify(
        STUDY, people(rng, 120), WorldSimulator("good"), unlabeled=240, progress=False
    )


def test_every_term_is_planned_and_explained(pilot):
    found = plan(pilot, cost_human=8, cost_simulated=0.05, effective_n=400)
    assert list(found.table.columns) == list(PLAN_COLUMNS)
    assert len(found.table) == len(pilot.components)
    assert (found.table["effective_n"] >= 400 - 1e-9).all()
    assert (found.table["safe_effective_n"] >= 400 - 1e-9).all()
    assert (found.table["safe_cost"] >= found.table["cost"]).all()
    assert (found.table["saving"] >= 0).all()
    formula = STUDY.models[0].formula
    assert found.sentence(formula, "x").startswith(f"x in {formula}: ")
    assert found.target == "effective_n=400"


@pytest.mark.parametrize(
    ("options", "culprit"),
    [
        ({}, "exactly one target"),
        ({"effective_n": 100, "budget": 10}, "exactly one target"),
        ({"effective_n": -5}, "effective_n"),
        ({"effective_n": 100, "cost_human": 0}, "cost_human"),
        ({"effective_n": 100, "cost_simulated": -1}, "cost_simulated"),
        ({"budget": 5}, "fewer than 2 humans"),
        ({"half_width": 0.1, "alpha": 2}, "alpha"),
        ({"effective_n": math.inf}, "effective_n"),
    ],
)
def test_bad_options_are_refused(pilot, options, culprit):
    arguments = {"cost_human": 10, "cost_simulated": 0.5, **options}
    with warnings.catch_warnings(), pytest.raises(OptionError, match=culprit):
        plan(pilot, **arguments)


def test_finetune_or_rectify_splits_the_humans(tmp_path, tiny_model_dir, private_cache):
    """Each fraction fine-tunes on its own pilot and labels the rest (never the same
    person twice: rectify refuses an adapter's pilot as labeled data); fraction 0 is
    the base model with every human; the figure has a bar group per term."""
    from simval.plan import TRADEOFF_COLUMNS, finetune_or_rectify
    from simval.simulators.loading import adapter_record
    from simval.tasks import load_task

    task = load_task("example")
    humans, frame = task.human.iloc[:80], task.human.iloc[80:280]
    personas = frame.drop(columns=list(task.study.item_names))
    found = finetune_or_rectify(
        task.study, humans, unlabeled=personas, adapters_dir=tmp_path / "adapters",
        model=tiny_model_dir, fractions=(0, 0.5), epochs=1, progress=False,
    )  # fmt: skip
    table = found.table
    assert list(table.columns) == list(TRADEOFF_COLUMNS)
    assert sorted(set(table["fraction"])) == [0.0, 0.5]
    assert set(table["n_finetune"] + table["n_labeled"]) == {80}
    assert set(table.loc[table["fraction"] == 0.5, "n_finetune"]) == {40}
    record = adapter_record(tmp_path / "adapters" / "finetune-0.5")
    assert len(record["pilot_index"]) == 40
    assert set(record["pilot_index"]) <= set(humans.index)
    np.testing.assert_allclose(table["gain_on_budget"], table["effective_n"] / 80)
    figure = found.figure(task.study.models[1].formula)
    assert len(figure.axes[0].patches) == 2 * 3  # two fractions x three slopes
    with pytest.raises(OptionError, match="fractions"):
        finetune_or_rectify(
            task.study,
            humans,
            unlabeled=personas,
            adapters_dir=tmp_path,
            model=tiny_model_dir,
            fractions=(1.0,),
        )


# --- an observational study on the command line ---------------------------------------------

PLAN_TARGET = ["--cost-human", "10", "--cost-simulated", "0.02", "--effective-n", "500"]


def test_an_observational_plan_refuses_unlabeled_naming_the_flags(
    capsys, tmp_path, monkeypatch
):
    """simval plan --unlabeled on a study without a treatment (the README's first plan
    on an observational study): exit 2, one line naming --personas FILE.csv and
    --labeled-frac, before any model loads."""
    from simval.cli import main
    from simval.cli_flags import ModelFlags

    monkeypatch.setattr(ModelFlags, "simulator", lambda self, study: pytest.fail())
    study, human, _ = observational_files(tmp_path)
    code = main(
        ["plan", str(study), "--human", str(human), "--model", "m", "--unlabeled",
         "2000", *PLAN_TARGET, "--out", str(tmp_path / "plan.csv")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "give --personas FILE.csv" in err and "--labeled-frac / --labeled-n" in err


@pytest.mark.parametrize("source", ["--personas", "--labeled-frac"])
def test_an_observational_study_is_planned_from_personas_or_a_labeled_split(
    capsys, tmp_path, tiny_model_dir, private_cache, source
):
    """simval plan on a study without a treatment, its pilot's simulated-only
    personas from --personas FILE.csv or --labeled-frac 0.5: a plan per term of both
    formulas that reaches the target at the pilot's estimates."""
    from simval.cli import main

    study, human, personas = observational_files(tmp_path)
    given = [source, str(personas) if source == "--personas" else "0.5"]
    code = main(
        ["plan", str(study), "--human", str(human), "--model", str(tiny_model_dir),
         *given, *PLAN_TARGET, "--out", str(tmp_path / "plan.csv")]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    table = pd.read_csv(tmp_path / "plan.csv")
    assert list(table.columns) == list(PLAN_COLUMNS)
    assert set(table["formula"]) == OBSERVATIONAL_FORMULAS
    assert (table["effective_n"] >= 500 - 1e-6).all(), table["effective_n"]
    assert (table["cost"] <= table["humans_only_cost"] + 1e-6).all()
    assert "Intercept in" not in out and "age in share ~ concern + age: " in out
