"""Multinomial and ordered outcomes (family mnlogit, ologit, oprobit) against R, their
refits, their errors, their coverage and their place in validate.

R reference: tests/reference/categorical_reference.R (nnet::multinom, MASS::polr, the
sandwich from numDeriv's per-respondent scores), output committed beside it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support import binomial_tolerance, r_reference

from simval.errors import DataError, EstimationError, FormulaError, OptionError
from simval.regression import fit

DATA, CASES, EXPECTED = r_reference("categorical")


@pytest.mark.parametrize("cov", ["nonrobust", "HC0", "HC1"])
@pytest.mark.parametrize("case", CASES.to_dict("records"), ids=CASES["case"].tolist())
def test_matches_r(case, cov):
    """Estimates and standard errors equal multinom's / polr's to 1e-6, coefficient by
    coefficient, named by outcome level (multinomial) and as R's thresholds (ordered)."""
    result = fit(case["formula_py"], DATA, family=case["family"], cov=cov)
    expected = EXPECTED[EXPECTED["case"] == f"{case['case']}_{cov}"]
    table = result.table
    assert table["term"].tolist() == expected["term"].tolist()
    for column in ("estimate", "std_error"):
        np.testing.assert_allclose(
            table[column], expected[column], rtol=0, atol=1e-6, err_msg=column
        )
    assert result.vcov.index.tolist() == table["term"].tolist()


def test_names_and_levels():
    mnl = fit("party ~ x", DATA, family="mnlogit")
    assert mnl.levels == ("Conservative", "Labour", "Liberal Democrat")
    assert mnl.table["term"].tolist() == [
        "Intercept | party=Labour",
        "x | party=Labour",
        "Intercept | party=Liberal Democrat",
        "x | party=Liberal Democrat",
    ]
    ordered = fit("ord ~ x", DATA, family="ologit")
    assert ordered.levels == (1, 2, 3, 4)
    assert ordered.table["term"].tolist() == [
        "x",
        "threshold 1|2",
        "threshold 2|3",
        "threshold 3|4",
    ]
    # an ordered Categorical's own order, not the sorted one
    reversed_levels = DATA.assign(
        ord=pd.Categorical(DATA["ord"], categories=[4, 3, 2, 1], ordered=True)
    )
    flipped = fit("ord ~ x", reversed_levels, family="ologit")
    assert flipped.levels == (4, 3, 2, 1)
    slope = flipped.table.set_index("term").loc["x", "estimate"]
    assert slope == pytest.approx(-ordered.table.set_index("term").loc["x", "estimate"])


def test_refit_keeps_the_original_levels():
    """A replicate keeps the human fit's levels and names: a level it lacks aliases that
    multinomial equation; without the reference level, or for an ordered model with an
    empty level, the replicate fails (its thresholds or contrasts have no meaning)."""
    mnl = fit("party ~ x", DATA, family="mnlogit")
    no_libdem = DATA[DATA["party"] != "Liberal Democrat"]
    refit = mnl.refit(no_libdem)
    assert refit.table["term"].tolist() == mnl.table["term"].tolist()
    assert set(refit.aliased) == {
        "Intercept | party=Liberal Democrat",
        "x | party=Liberal Democrat",
    }
    assert refit.table["estimate"].iloc[:2].notna().all()
    with pytest.raises(EstimationError, match="reference level 'Conservative'"):
        mnl.refit(DATA[DATA["party"] != "Conservative"])
    with pytest.raises(DataError, match="did not see \\(factors: party\\).*Green"):
        mnl.refit(DATA.assign(party=DATA["party"].replace("Labour", "Green")))
    ordered = fit("ord ~ x", DATA, family="ologit")
    with pytest.raises(EstimationError, match="level\\(s\\) 2"):
        ordered.refit(DATA[DATA["ord"] != 2])


@pytest.mark.parametrize(
    ("data", "formula", "options", "error", "message"),
    [
        (DATA, "party ~ x", {"family": "ologit"}, DataError, "holds text"),
        (DATA, "ord ~ x", {"family": "ologit", "cov": "HC3"}, OptionError, "HC0"),
        (
            DATA,
            "ord ~ x",
            {"family": "mnlogit", "cov": "cluster:arm"},
            OptionError,
            "no HC2/HC3 or cluster",
        ),
        (
            DATA.assign(two=DATA["ord"] > 2),
            "two ~ x",
            {"family": "oprobit"},
            EstimationError,
            "family='logit' or 'probit'",
        ),
        (DATA, "np.log(ord) ~ x", {"family": "ologit"}, FormulaError, "a column"),
    ],
    ids=["text-ordered", "hc3", "cluster", "two-levels", "expression"],
)
def test_bad_input_names_the_culprit(data, formula, options, error, message):
    with pytest.raises(error, match=message):
        fit(formula, data, **options)


def _ordered_data(rng: np.random.Generator, *, n: int, family: str) -> pd.DataFrame:
    x = rng.normal(size=n)
    arm = rng.choice(["a", "b"], size=n)
    eta = 0.8 * x - 0.5 * (arm == "b")
    noise = rng.logistic(size=n) if family == "ologit" else rng.normal(size=n)
    y = np.digitize(eta + noise, [-1.0, 0.0, 1.2]) + 1
    return pd.DataFrame({"y": y, "x": x, "arm": arm})


def _multinomial_data(rng: np.random.Generator, *, n: int) -> pd.DataFrame:
    x = rng.normal(size=n)
    utility = np.column_stack([np.zeros(n), 0.4 + 0.7 * x, -0.3 - 0.5 * x])
    p = np.exp(utility) / np.exp(utility).sum(axis=1, keepdims=True)
    y = (rng.random(n)[:, None] > p.cumsum(axis=1)).sum(axis=1)
    return pd.DataFrame({"y": np.array(["a", "b", "c"])[y], "x": x})


TRUTH = {
    "ologit": {"x": 0.8, "C(arm)[T.b]": -0.5, "threshold 1|2": -1.0},
    "oprobit": {"x": 0.8, "C(arm)[T.b]": -0.5, "threshold 3|4": 1.2},
    "mnlogit": {"x | y=b": 0.7, "Intercept | y=c": -0.3},
}


@pytest.mark.parametrize("family", ["ologit", "oprobit", "mnlogit"])
def test_intervals_cover_at_their_level(family):
    """Seeded: 200 data sets of 300 respondents from the model itself; each 95% CI
    (HC1) covers its true coefficient at a rate inside the two-sided binomial band
    around 0.95 (support.binomial_tolerance)."""
    rng = np.random.default_rng(7)
    trials, covered = 200, {term: 0 for term in TRUTH[family]}
    for _ in range(trials):
        if family == "mnlogit":
            data, formula = _multinomial_data(rng, n=300), "y ~ x"
        else:
            data, formula = _ordered_data(rng, n=300, family=family), "y ~ x + C(arm)"
        table = fit(formula, data, family=family).table.set_index("term")
        for term, true in TRUTH[family].items():
            covered[term] += (
                table.at[term, "ci_low"] <= true <= table.at[term, "ci_high"]
            )
    for term, count in covered.items():
        rate = count / trials
        assert abs(rate - 0.95) <= binomial_tolerance(0.95, trials), (term, rate)


def test_validate_judges_an_ordered_formula():
    """validate on an ologit formula: a simulator drawing from the true model is not
    found inconsistent; one with the slope's sign flipped is; thresholds are never
    scored as findings."""
    import simval

    rng = np.random.default_rng(3)
    human = _ordered_data(rng, n=600, family="ologit")

    def draws(sign: float):
        def simulate(personas: pd.DataFrame, seed=None) -> pd.DataFrame:
            local = np.random.default_rng(seed)
            eta = sign * 0.8 * personas["x"] - 0.5 * (personas["arm"] == "b")
            latent = eta + local.logistic(size=len(personas))
            y = np.digitize(latent, [-1.0, 0.0, 1.2]) + 1
            return pd.DataFrame({"y": y}, index=personas.index)

        return simval.FunctionSimulator(simulate)

    decisions = {}
    for name, sign in (("true", 1.0), ("flipped", -1.0)):
        result = simval.validate(
            "y ~ x + C(arm)", human, draws(sign), family="ologit", reps=5, seed=1
        )
        decisions[name] = result.verdicts["decision"].iloc[0]
        assert result.verdicts["n_terms"].iloc[0] == 2  # x and arm, no threshold
    assert decisions["true"] != "inconsistent"
    assert decisions["flipped"] == "inconsistent"
