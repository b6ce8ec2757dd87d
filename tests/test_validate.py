"""validate(): coverage and sign recovery by seeded simulation, failure reporting, bad input."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from simval import (
    BootstrapSimulator,
    DataError,
    EstimationError,
    FormulaError,
    FunctionSimulator,
    MarginalSimulator,
    OptionError,
    SimulatorError,
    Validation,
    validate,
)
from simval.tasks import load_task
from simval.validate import OVERALL, SUMMARY_KEYS


def known_effects(n: int = 400, seed: int = 1) -> pd.DataFrame:
    """y = 1 + 0.5 x1 - 0.8 g + 0 x2 + noise: two clear effects, one null, an intercept."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=(2, n))
    g = rng.integers(0, 2, size=n)
    y = 1 + 0.5 * x1 - 0.8 * g + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g})


FORMULA = "y ~ x1 + x2 + g"


def binomial_tolerance(p: float, n: int, z: float = 4.0) -> float:
    """Two-sided tolerance for a share estimated from n Bernoulli(p) draws."""
    return z * math.sqrt(p * (1 - p) / n)


def test_bootstrap_simulator_recovers_signs_at_nominal_coverage():
    """The perfect simulator: each replicate is a bootstrap of the humans, so its CIs cover the
    human estimate at about the nominal rate and it recovers every significant sign."""
    human = known_effects()
    reps = 300
    result = validate(FORMULA, human, BootstrapSimulator(human), reps=reps, seed=2)
    terms = result.coefficients.query("term != 'Intercept'")
    pooled = float(terms["coverage"].mean())
    assert abs(pooled - 0.95) < binomial_tolerance(0.95, reps * len(terms))
    summary = result.summary()
    assert summary["sign_f1"] > 0.95
    assert summary["false_positive_rate"] < 0.2


def test_marginal_simulator_loses_the_effects():
    """A simulator that ignores the covariates finds no effect and rarely covers the human one."""
    human = known_effects()
    result = validate(FORMULA, human, MarginalSimulator(human), reps=100, seed=2)
    summary = result.summary()
    assert summary["sign_f1"] < 0.1
    assert summary["coverage"] < 0.5
    effects = result.coefficients.set_index("term").loc[["x1", "g"]]
    assert (effects["coverage"] < 0.05).all()


def test_study_validation_has_every_table_per_subgroup():
    task = load_task("example")
    result = validate(
        task.study, task.human, BootstrapSimulator(task.human), reps=3, seed=0
    )
    levels = {
        ("gender", "Female"),
        ("gender", "Male"),
        ("age_band", "18-34"),
        (OVERALL, OVERALL),
    }
    for table in (
        result.distributions,
        result.variance,
        result.heterogeneity,
        result.coherence,
    ):
        assert levels <= set(zip(table["subgroup"], table["level"]))
    assert set(result.coefficients["formula"]) == {m.formula for m in task.study.models}
    assert set(result.summary()) == set(SUMMARY_KEYS)
    assert result.pattern_items == ("concern", "trust")
    overall = result.heterogeneity.query("subgroup == 'overall'").iloc[0]
    assert overall["unique_patterns_human"] > 10


def test_same_seed_same_numbers_and_json_round_trip():
    task = load_task("example")
    sim = MarginalSimulator(task.human)
    first = validate(task.study, task.human, sim, reps=2, seed=7)
    second = validate(task.study, task.human, sim, reps=2, seed=7)
    pd.testing.assert_frame_equal(first.coefficients, second.coefficients)
    restored = Validation.from_json(first.to_json())
    for name in (
        "coefficients",
        "recovery",
        "distributions",
        "variance",
        "heterogeneity",
        "coherence",
    ):
        pd.testing.assert_frame_equal(getattr(restored, name), getattr(first, name))
    assert restored.summary() == pytest.approx(first.summary(), nan_ok=True)
    assert restored.pattern_items == first.pattern_items


def test_unestimable_replicate_is_reported_not_dropped():
    """A simulator that always answers 0 makes the logit unestimable; the term rows stay."""
    rng = np.random.default_rng(0)
    human = pd.DataFrame({"x": rng.normal(size=200)})
    human["y"] = (human["x"] + rng.normal(size=200) > 0).astype(int)
    always_no = FunctionSimulator(lambda p: pd.DataFrame({"y": 0}, index=p.index))
    result = validate("y ~ x", human, always_no, family="logit", reps=4)
    rows = result.coefficients
    assert rows["term"].tolist() == ["Intercept", "x"]
    assert (rows["n_failed"] == 4).all() and (rows["n_reps"] == 0).all()
    assert rows["failure"].str.contains("constant").all()
    assert result.summary()["sign_f1"] == 0


def test_subgroup_where_human_model_fails_is_reported():
    human = known_effects(n=60)
    human["site"] = ["big"] * 57 + ["tiny"] * 3
    result = validate(
        FORMULA, human, BootstrapSimulator(human), subgroups=["site"], reps=2
    )
    tiny = result.recovery.query("level == 'tiny'").iloc[0]
    assert tiny["n_terms"] == 0 and tiny["failure"]
    assert not result.coefficients.query("level == 'big'").empty


# --- bad input: the error type, and a message that names the culprit ------------------


def test_formula_naming_a_missing_column():
    human = known_effects()
    with pytest.raises(FormulaError, match="income"):
        validate("y ~ x1 + income", human, BootstrapSimulator(human))


def test_non_binary_outcome_for_logit():
    human = known_effects().assign(y=lambda d: d["g"] * 2)
    with pytest.raises(DataError, match="'y'"):
        validate("y ~ x1", human, BootstrapSimulator(known_effects()), family="logit")


def test_empty_human_data():
    with pytest.raises(DataError, match="empty"):
        validate(FORMULA, known_effects().iloc[0:0], MarginalSimulator(known_effects()))


def test_empty_subgroup_level():
    human = known_effects()
    human["region"] = pd.Categorical(
        ["north"] * len(human), categories=["north", "south"]
    )
    with pytest.raises(DataError, match="'region'.*south"):
        validate(FORMULA, human, BootstrapSimulator(human), subgroups=["region"])


def test_unknown_subgroup_column():
    human = known_effects()
    with pytest.raises(DataError, match="region"):
        validate(FORMULA, human, BootstrapSimulator(human), subgroups=["region"])


@pytest.mark.parametrize(
    "answer, culprit",
    [
        (lambda p: pd.DataFrame({"y": 1.0}, index=range(len(p))), "index"),
        (lambda p: pd.DataFrame({"outcome": 1.0}, index=p.index), "'y'|: y"),
        (lambda p: pd.DataFrame({"y": 12345.5}, index=p.index), "'y'.*12345.5"),
    ],
)
def test_simulator_breaking_the_contract(answer, culprit):
    with pytest.raises(SimulatorError, match=culprit):
        validate(FORMULA, known_effects(), FunctionSimulator(answer), reps=1)


@pytest.mark.parametrize(
    "options, culprit",
    [
        ({"family": "tobit"}, "tobit"),
        ({"cov": "HC7"}, "HC7"),
        ({"reps": 0}, "reps"),
        ({"alpha": 1.5}, "alpha"),
    ],
)
def test_bad_options(options, culprit):
    human = known_effects()
    with pytest.raises(OptionError, match=culprit):
        validate(FORMULA, human, BootstrapSimulator(human), **options)


def test_object_without_simulate():
    with pytest.raises(SimulatorError, match="simulate"):
        validate(FORMULA, known_effects(), object())


def test_human_model_that_cannot_be_estimated_is_an_error():
    human = known_effects().assign(y=1.0)
    with pytest.raises(EstimationError, match="'y'"):
        validate(FORMULA, human, BootstrapSimulator(human))


def test_coherence_pair_counts_a_respondent_breaking_any_of_its_rules():
    """The example declares two rules on (concern, share): the pair row is their union and is
    what summary() reports; each rule keeps its own row."""
    task = load_task("example")
    result = validate(task.study, task.human, BootstrapSimulator(task.human), reps=3)
    overall = result.coherence.query("subgroup == @OVERALL")
    assert overall["scope"].tolist() == ["pair", "rule", "rule"]
    pair, high, low = overall["incoherence_human"]
    human = task.human
    union = ((human.concern >= 4) & (human.share == 1)) | (
        (human.concern <= 2) & (human.share == 0)
    )
    assert pair == pytest.approx(union.mean())
    assert pair == pytest.approx(high + low)  # the two directions cannot both hold
    assert result.summary()["incoherence_human"] == pytest.approx(pair)
