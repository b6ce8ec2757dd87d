"""The public API as a whole: one matrix over families and covariances, a smoke test of every
public attribute of each result, and the promise that importing simval stays light."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest

import simval
from simval import (
    BootstrapSimulator,
    Fit,
    Heterogeneity,
    Recovery,
    Validation,
    fit,
    validate,
)

OUTCOMES = {"ols": "score", "logit": "chose", "probit": "chose", "poisson": "count"}
COVS = ["nonrobust", "HC0", "HC1", "HC2", "HC3", "cluster:site"]


@pytest.fixture(scope="module")
def survey() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 300
    x = rng.normal(size=n)
    arm = rng.choice(["a", "b"], size=n)
    latent = 0.8 * x + 0.5 * (arm == "b")
    return pd.DataFrame(
        {
            "x": x,
            "arm": arm,
            "site": rng.integers(0, 12, size=n),
            "score": np.clip(np.round(3 + latent + rng.normal(size=n)), 1, 5).astype(
                int
            ),
            "chose": (latent + rng.logistic(size=n) > 0).astype(int),
            "count": rng.poisson(np.exp(0.3 + 0.3 * latent)),
        }
    )


@pytest.mark.parametrize("cov", COVS)
@pytest.mark.parametrize("family", list(OUTCOMES))
def test_validate_matrix(survey, family, cov):
    formula = f"{OUTCOMES[family]} ~ x + C(arm)"
    human = survey.drop(columns=[c for c in OUTCOMES.values() if c != OUTCOMES[family]])
    result = validate(
        formula,
        human,
        BootstrapSimulator(human),
        family=family,
        cov=cov,
        reps=3,
        seed=1,
    )
    terms = result.coefficients
    assert terms["term"].tolist() == ["Intercept", "x", "C(arm)[T.b]"]
    assert (terms["n_reps"] == 3).all()
    assert terms["human_estimate"].to_numpy() == pytest.approx(
        fit(formula, human, family=family, cov=cov).table["estimate"].to_numpy()
    )
    assert 0 <= result.summary()["coverage"] <= 1


def public_fields(result: object) -> dict[str, object]:
    return {
        f.name: getattr(result, f.name)
        for f in dataclasses.fields(result)
        if not f.name.startswith("_")
    }


def test_every_public_attribute_of_every_result(survey):
    human = survey[["x", "arm", "site", "score", "chose"]]
    validation = validate(
        "chose ~ x + C(arm)", human, BootstrapSimulator(human), family="logit", items=["score"],
        subgroups=["arm"], reps=2,
    )  # fmt: skip
    for name, value in public_fields(validation).items():
        assert value is not None, name
        if isinstance(value, pd.DataFrame):
            assert not value.empty or name == "coherence", name
            assert all(c == c.lower() and " " not in c for c in value.columns), name
    summary = validation.summary()
    assert all(isinstance(v, int | float) for v in summary.values())
    assert json.loads(validation.to_json())["reps"] == 2
    assert isinstance(Validation.from_json(validation.to_json()), Validation)

    fitted = fit("score ~ x + C(arm)", human)
    assert isinstance(fitted, Fit)
    assert set(public_fields(fitted)) == {
        "formula", "family", "cov", "absorb", "weights", "alpha", "nobs", "table",
        "aliased", "vcov", "design_sd", "outcome_sd", "clusters", "levels",
        "input_scale", "satterthwaite_df", "wald_df",
    }  # fmt: skip
    assert fitted.weights is None and fitted.levels is None
    assert fitted.refit(human) == fitted
    # the covariance is the one the standard errors come from
    np.testing.assert_allclose(
        np.sqrt(np.diag(fitted.vcov)), fitted.table["std_error"], rtol=1e-12
    )
    assert list(fitted.vcov.index) == list(fitted.table["term"])
    assert (
        fitted.clusters is None
        and fit("score ~ x", human, cov="cluster:site").clusters > 1
    )

    recovery = simval.coefficient_recovery(fitted.table, [fitted.table])
    assert isinstance(recovery, Recovery)
    assert list(recovery.replicates.columns) == [
        "rep", "sign_f1", "false_positive_rate", "coverage",
    ]  # fmt: skip
    assert set(recovery.summary()) == {
        "sign_f1",
        "false_positive_rate",
        "coverage",
        "alpha",
    }

    patterns = simval.heterogeneity(human, ["score", "chose"])
    assert isinstance(patterns, Heterogeneity)
    assert (
        patterns.n == len(human)
        and patterns.unique_patterns <= 10
        and patterns.entropy > 0
        and patterns.entropy_corrected > patterns.entropy
    )

    for result in (validation, fitted, recovery, patterns):
        field = dataclasses.fields(result)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(result, field, None)


def test_one_validate_signature_for_one_simulator_or_several(survey):
    """``validate`` of a mapping gives a Validation per name; ``compare`` is its
    ``summary_table``, the simulators in the mapping's order."""
    human = survey[["x", "arm", "score"]]
    simulators = {
        "resampling": BootstrapSimulator(human),
        "marginal": simval.MarginalSimulator(human),
    }
    options = {"reps": 2, "resamples": 0, "seed": 3, "progress": False}
    each = validate("score ~ x + C(arm)", human, simulators, **options)
    assert list(each) == ["resampling", "marginal"]
    assert all(isinstance(v, Validation) for v in each.values())
    table = simval.compare(simulators, human, "score ~ x + C(arm)", **options)
    assert list(table.index[:2]) == ["resampling", "marginal"]
    from simval.results import summary_table

    pd.testing.assert_frame_equal(table, summary_table(each))


def test_everything_exported_exists():
    for name in simval.__all__:
        assert hasattr(simval, name), name


def test_every_public_submodule_is_an_attribute_after_import_simval():
    """As in numpy or scipy, ``import simval`` then ``simval.metrics.jsd`` works, for
    every public submodule (run in a fresh interpreter: nothing imported them before);
    a public function keeps the name it shares with its module (``simval.validate``)."""
    code = (
        "import pkgutil, types, simval\n"
        "names = [m.name for m in pkgutil.iter_modules(simval.__path__)\n"
        "         if not m.name.startswith('_')]\n"
        "assert {'metrics', 'report', 'simulators', 'regression'} <= set(names), names\n"
        "for name in names:\n"
        "    value = getattr(simval, name)\n"
        "    assert isinstance(value, types.ModuleType) or callable(value), name\n"
        "    assert name in dir(simval), name\n"
        "print(simval.metrics.jsd.__name__, callable(simval.validate))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert shown.stdout.split() == ["jsd", "True"]
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        simval.nonexistent  # noqa: B018


HEAVY = ("statsmodels", "linearmodels", "torch", "transformers", "peft")


@pytest.mark.parametrize(
    "step",
    [
        "import simval",
        "import simval.study; simval.study.Study",
        "from simval.cli import main; main(['--help'])",
        "from simval.cli import main; main(['validate', '--help'])",
    ],
)
def test_import_and_help_load_no_estimator_or_model_library(step):
    """``import simval`` and ``simval --help`` stay quick: statsmodels loads when a
    model is fitted, torch and transformers when a model is loaded."""
    code = f"import sys\n{step}\nprint([m for m in {HEAVY!r} if m in sys.modules])"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip().splitlines()[-1] == "[]"


class Mumbler:
    """Answers like the humans, except that it cannot read its first answer to
    ``chose`` in each replicate (as a generate-mode simulator counts them)."""

    def __init__(self, human: pd.DataFrame) -> None:
        self.human = human
        self.unparseable: Counter[str] = Counter()

    def simulate(self, personas, items, *, seed=None) -> pd.DataFrame:
        answers = self.human.loc[personas.index, [i.name for i in items]].copy()
        answers = answers.reset_index(drop=True).set_axis(personas.index)
        answers.iloc[0, answers.columns.get_loc("chose")] = np.nan
        self.unparseable["chose"] += 1
        return answers


def test_unparseable_answers_of_each_validation_reach_its_notes(survey):
    """Per item, this validation's replicates only (the simulator's count runs on)."""
    mumbler = Mumbler(survey)
    for _ in range(2):
        result = validate("chose ~ x + C(arm)", survey, mumbler, reps=3, resamples=20)
        assert result.notes["unparseable"] == {"chose": 3}
    assert mumbler.unparseable["chose"] == 6
