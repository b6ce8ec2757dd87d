"""Tests of simval.regression: R reference numbers, errors, aliasing, missing values, refit.

The reference numbers come from tests/reference/regression_reference.R (R lm/glm + sandwich +
lmtest), committed as CSV so that the tests need no R. R's term names are mapped to formulaic's
with the explicit ``R_TERMS`` dict below (a name absent from it is spelled the same in both);
the test also checks that the mapped R terms come in the same order as the table's rows.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simval.errors import (
    DataError,
    EstimationError,
    FormulaError,
    OptionError,
    SimvalError,
)
from simval.metrics import COEF_COLUMNS
from simval.regression import Fit, fit

REFERENCE = Path(__file__).parent / "reference"
NUMBERS = ["estimate", "std_error", "statistic", "p_value", "ci_low", "ci_high"]

R_TERMS = {
    "(Intercept)": "Intercept",
    "factor(arm)b": "C(arm)[T.b]",
    "factor(arm)c": "C(arm)[T.c]",
    "factor(arm)b:x": "C(arm)[T.b]:x",
    "factor(arm)c:x": "C(arm)[T.c]:x",
    "I(x^2)": "I(x ** 2)",
    "log(z)": "np.log(z)",
    "log(zna)": "np.log(zna)",
}

CASES = pd.read_csv(REFERENCE / "regression_cases.csv", keep_default_na=False)
R_NUMBERS = pd.read_csv(REFERENCE / "regression_reference.csv")


@pytest.fixture(scope="module")
def reference_data() -> pd.DataFrame:
    """The data set the R script simulated and fitted."""
    return pd.read_csv(REFERENCE / "regression_data.csv")


@pytest.fixture
def small() -> pd.DataFrame:
    """A small seeded data set for error, aliasing and refit tests."""
    rng = np.random.default_rng(7)
    n = 120
    x = rng.normal(size=n)
    arm = rng.choice(["a", "b", "c"], size=n)
    return pd.DataFrame(
        {
            "y": 1 + x + (arm == "b") + rng.normal(size=n),
            "yb": (rng.random(n) < 1 / (1 + np.exp(-x))).astype(int),
            "yc": rng.poisson(np.exp(0.3 * x)),
            "x": x,
            "z": np.exp(rng.normal(size=n)),
            "arm": arm,
            "g": rng.integers(0, 12, size=n),
            "fe": rng.choice(["p", "q", "r", "s"], size=n),
        }
    )


# ---- the outside reference ---------------------------------------------------------------


@pytest.mark.parametrize(
    "case", list(CASES.itertuples(index=False)), ids=list(CASES["case"])
)
def test_matches_r(case, reference_data: pd.DataFrame) -> None:
    """Estimates, errors, statistics, p-values and CIs equal R's to 1e-6 relative."""
    result = fit(
        case.formula_py,
        reference_data,
        family=case.family,
        cov=case.cov,
        absorb=case.absorb or None,
        alpha=1 - case.conf_level,
    )
    expected = R_NUMBERS[R_NUMBERS["case"] == case.case].reset_index(drop=True)
    terms = [R_TERMS.get(term, term) for term in expected["term"]]
    assert list(result.table["term"]) == terms
    assert result.nobs == expected["nobs"].iloc[0]
    assert result.aliased == tuple(
        np.array(terms)[expected["estimate"].isna().to_numpy()]
    )
    for column in NUMBERS:
        np.testing.assert_allclose(
            result.table[column],
            expected[column],
            rtol=1e-6,
            err_msg=f"{case.case}: {column}",
        )


def test_reference_covers_the_brief() -> None:
    """Every family and cov type, absorb, aliasing and missing values are in the reference."""
    pairs = set(zip(CASES["family"], CASES["cov"]))
    for family in ("ols", "logit"):
        for cov in ("nonrobust", "HC0", "HC1", "HC2", "HC3", "cluster:g"):
            assert (family, cov) in pairs
    assert {("probit", "HC1"), ("poisson", "HC1")} <= pairs
    assert (CASES["absorb"] == "fe").sum() == 4
    assert R_NUMBERS["estimate"].isna().any()
    assert R_NUMBERS.groupby("case")["nobs"].first().lt(400).any()


# ---- the result object -------------------------------------------------------------------


def test_fit_attributes(small: pd.DataFrame) -> None:
    """A Fit records its settings and a tidy table with a RangeIndex."""
    result = fit("y ~ x + C(arm)", small, cov="HC3", alpha=0.1)
    assert isinstance(result, Fit)
    assert (
        result.formula,
        result.family,
        result.cov,
        result.absorb,
        result.alpha,
    ) == ("y ~ x + C(arm)", "ols", "HC3", None, 0.1)
    assert result.nobs == len(small)
    assert tuple(result.table.columns) == COEF_COLUMNS
    assert isinstance(result.table.index, pd.RangeIndex)
    assert list(result.table["term"]) == [
        "Intercept",
        "x",
        "C(arm)[T.b]",
        "C(arm)[T.c]",
    ]
    assert result.aliased == ()
    assert "_spec" not in repr(result)


def test_equality(small: pd.DataFrame) -> None:
    """Fits compare by their public fields; a different setting makes them unequal."""
    assert fit("y ~ x", small) == fit("y ~ x", small)
    assert fit("y ~ x", small) != fit("y ~ x", small, cov="HC0")
    assert fit("y ~ x", small) != "y ~ x"


def test_ci_follows_alpha(small: pd.DataFrame) -> None:
    """A smaller alpha gives a wider interval around the same estimate."""
    narrow = fit("y ~ x", small, alpha=0.2).table
    wide = fit("y ~ x", small, alpha=0.01).table
    assert (
        wide["ci_high"] - wide["ci_low"] > narrow["ci_high"] - narrow["ci_low"]
    ).all()
    np.testing.assert_allclose(wide["estimate"], narrow["estimate"])


# ---- missing values and aliasing ---------------------------------------------------------


def test_missing_values_are_dropped(small: pd.DataFrame) -> None:
    """Rows missing any used variable (or the cluster column) are dropped, like na.omit."""
    data = small.astype({"arm": object, "g": float})
    data.loc[[0, 1, 2], "x"] = np.nan
    data.loc[[2, 3], "arm"] = None
    data.loc[[4], "g"] = np.nan
    data.loc[[5], "z"] = np.nan  # not used by the model: kept
    result = fit("y ~ x + C(arm)", data, cov="cluster:g")
    assert result.nobs == len(small) - 5
    complete = data.drop(index=[0, 1, 2, 3, 4])
    assert result == fit("y ~ x + C(arm)", complete, cov="cluster:g")


def test_missing_values_inside_stateful_transforms(small: pd.DataFrame) -> None:
    """center(x) sees only the complete rows, in fit and in refit."""
    data = small.assign(x=small["x"].where(small.index > 9))
    result = fit("y ~ center(x)", data)
    assert result.nobs == len(small) - 10
    assert result == fit("y ~ center(x)", data.dropna()) == result.refit(data)


def test_bool_outcome_with_missing_values(small: pd.DataFrame) -> None:
    """An object column of bools with None is a bool outcome once the missing rows go."""
    outcome = small["yb"].astype(bool).astype(object).where(small.index > 4, None)
    result = fit("yb ~ x", small.assign(yb=outcome), family="logit")
    assert result.nobs == len(small) - 5
    assert result == fit("yb ~ x", small.iloc[5:], family="logit")


def test_collinear_column_is_aliased_like_r(small: pd.DataFrame) -> None:
    """The later of two collinear columns is aliased; the rest is the fit without it."""
    data = small.assign(x2=2 * small["x"] - 1, zero=0.0)
    result = fit("y ~ x + x2 + zero + C(arm)", data)
    assert result.aliased == ("x2", "zero")
    rows = result.table.set_index("term")
    assert rows.loc[["x2", "zero"]].isna().all().all()
    reduced = fit("y ~ x + C(arm)", data).table.set_index("term")
    pd.testing.assert_frame_equal(rows.drop(index=["x2", "zero"]), reduced)


def test_absorb_aliases_terms_constant_within_groups(small: pd.DataFrame) -> None:
    """A term the absorbed effects explain is aliased; the other slopes are unchanged."""
    data = small.assign(level=small["fe"].map({"p": 1.0, "q": 2.0, "r": 0.5, "s": 3.0}))
    result = fit("y ~ x + level", data, absorb="fe")
    assert result.aliased == ("level",)
    assert list(result.table["term"]) == ["x", "level"]
    reduced = fit("y ~ x", data, absorb="fe").table
    pd.testing.assert_frame_equal(result.table.iloc[[0]], reduced)


def test_absorb_equals_dummies(small: pd.DataFrame) -> None:
    """Absorbing fe gives the slopes and HC1 errors of OLS with C(fe) dummies."""
    absorbed = fit("y ~ x + C(arm)", small, absorb="fe").table.set_index("term")
    dummies = fit("y ~ x + C(arm) + C(fe)", small).table.set_index("term")
    pd.testing.assert_frame_equal(absorbed, dummies.loc[absorbed.index], rtol=1e-10)


# ---- refit -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "options"),
    [
        ("y ~ C(arm) * x + I(x**2) + np.log(z)", {"cov": "HC2"}),
        ("y ~ x + C(arm)", {"cov": "cluster:g", "absorb": "fe"}),
        ("yb ~ x + C(arm)", {"family": "logit", "cov": "HC3"}),
        ("yb ~ x + np.log(z)", {"family": "probit", "cov": "cluster:g"}),
        ("yc ~ x + C(arm)", {"family": "poisson", "cov": "nonrobust"}),
        ("y ~ center(x) + scale(z)", {"cov": "HC1"}),
    ],
)
def test_refit_on_the_same_data_is_the_same_fit(
    small: pd.DataFrame, formula, options
) -> None:
    """refit(data) with the original data reproduces the original fit exactly."""
    original = fit(formula, small, **options)
    assert original.refit(small) == original


def test_refit_with_a_missing_level(small: pd.DataFrame) -> None:
    """A level absent from the new data gives an aliased, NaN row; the rest is estimated."""
    original = fit("y ~ x + C(arm)", small)
    subset = small[small["arm"] != "c"]
    again = original.refit(subset)
    assert list(again.table["term"]) == list(original.table["term"])
    assert again.aliased == ("C(arm)[T.c]",)
    assert again.table.set_index("term").loc["C(arm)[T.c]", NUMBERS].isna().all()
    assert again.nobs == len(subset)
    direct = fit("y ~ x + C(arm)", subset).table
    pd.testing.assert_frame_equal(again.table.dropna().reset_index(drop=True), direct)


def test_refit_without_the_base_level_marks_the_factor_unidentified(
    small: pd.DataFrame,
) -> None:
    """Without the base level the remaining dummies would measure contrasts against
    another level under the original names (R would alias the last one and re-base the
    rest): every term of the factor is aliased instead; other terms are kept."""
    original = fit("yb ~ x + C(arm)", small, family="logit")
    again = original.refit(small[small["arm"] != "a"])
    assert again.aliased == ("C(arm)[T.b]", "C(arm)[T.c]")
    assert np.isfinite(
        again.table.set_index("term").loc[["Intercept", "x"], "std_error"]
    ).all()
    interacted = fit("y ~ x * C(arm)", small).refit(small[small["arm"] != "a"])
    assert set(interacted.aliased) == {
        "C(arm)[T.b]", "C(arm)[T.c]", "x:C(arm)[T.b]", "x:C(arm)[T.c]",
    }  # fmt: skip


def test_refit_without_another_level_aliases_only_its_column(
    small: pd.DataFrame,
) -> None:
    original = fit("y ~ x + C(arm)", small)
    assert original.refit(small[small["arm"] != "c"]).aliased == ("C(arm)[T.c]",)


def test_refit_rejects_an_unseen_level(small: pd.DataFrame) -> None:
    """A level the original fit never saw cannot be encoded: DataError naming it."""
    original = fit("y ~ x + C(arm)", small[small["arm"] != "c"])
    with pytest.raises(DataError, match=r"'c'.*|C\(arm\)") as info:
        original.refit(small)
    assert "'c'" in str(info.value) and "C(arm)" in str(info.value)


@pytest.mark.parametrize(
    "formula, options",
    [
        ("y ~ x * C(arm)", {}),  # columns and factors: one stacked design
        ("yb ~ x + C(arm)", {"family": "logit", "cov": "cluster:g"}),
        ("y ~ center(x) + C(arm)", {}),  # a stateful transform: refitted alone
        ("y ~ x + C(arm)", {"absorb": "fe"}),
    ],
)
def test_refit_many_is_refit_of_each_sample(
    small: pd.DataFrame, formula, options
) -> None:
    """refit_many gives each sample exactly its own refit (bit for bit), and in place of
    a refit that raises, the error it raises: the shared design changes no number."""
    original = fit(formula, small, **options)
    rng = np.random.default_rng(3)
    samples = [small.iloc[rng.integers(len(small), size=len(small))] for _ in range(3)]
    samples += [
        small[small["arm"] != "a"],  # the reference level absent: aliased, not an error
        small.assign(y=np.nan, yb=np.nan),  # no complete row: DataError
        small.head(2),  # no residual degrees of freedom: EstimationError
    ]
    many = original.refit_many(samples)
    for sample, got in zip(samples, many):
        try:
            expected = original.refit(sample)
        except (DataError, EstimationError) as exc:
            assert type(got) is type(exc) and str(got) == str(exc)
        else:
            assert got == expected


def test_refit_many_with_an_unseen_level_refits_each_alone(small: pd.DataFrame) -> None:
    """One sample holding a level the original fit never saw cannot share the design:
    that sample gets its DataError, the others their fits."""
    original = fit("y ~ x + C(arm)", small[small["arm"] != "c"])
    first, second = original.refit_many([small[small["arm"] != "c"], small])
    assert first == original.refit(small[small["arm"] != "c"])
    assert isinstance(second, DataError) and "C(arm)" in str(second)


def test_refit_checks_columns(small: pd.DataFrame) -> None:
    """refit raises the same errors as fit for missing columns."""
    original = fit("y ~ x + C(arm)", small, cov="cluster:g")
    with pytest.raises(FormulaError, match="'arm'"):
        original.refit(small.drop(columns="arm"))
    with pytest.raises(DataError, match="cluster column 'g'"):
        original.refit(small.drop(columns="g"))


# ---- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "culprit"),
    [
        ("y ~ x +", "y ~ x +"),
        ("y ~ (x", "y ~ (x"),
        ("y ~ x + w", "column 'w', which is not in the data"),
        ("y ~ sqrt(x)", "calls 'sqrt'"),
        ("x + z", "no outcome"),
        ("y + yb ~ x", "exactly one outcome"),
        ("y ~ np.log(arm)", "np.log(arm)"),
    ],
)
def test_formula_errors(small: pd.DataFrame, formula: str, culprit: str) -> None:
    """Unparsable formulas, unknown columns and bad expressions are FormulaErrors."""
    with pytest.raises(FormulaError) as info:
        fit(formula, small)
    assert culprit in str(info.value)
    assert isinstance(info.value, SimvalError) and isinstance(info.value, ValueError)


def test_data_errors(small: pd.DataFrame) -> None:
    """Empty data, nothing left after na.omit, and missing cluster/absorb columns."""
    with pytest.raises(DataError, match="no rows"):
        fit("y ~ x", small.iloc[:0])
    gappy = small.assign(x=np.nan, z=small["z"].where(small.index > 3))
    with pytest.raises(DataError, match=r"'x' \(120 missing\)") as info:
        fit("y ~ x + z", gappy)
    assert "'z' (4 missing)" in str(info.value)
    with pytest.raises(DataError, match="cluster column 'school'"):
        fit("y ~ x", small, cov="cluster:school")
    with pytest.raises(DataError, match="absorb column 'county'"):
        fit("y ~ x", small, absorb="county")
    with pytest.raises(DataError, match="outcome 'arm' is not numeric"):
        fit("arm ~ x", small)
    with pytest.raises(DataError, match="data must be a pandas DataFrame"):
        fit("y ~ x", small.to_dict())


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")
def test_infinite_values(small: pd.DataFrame) -> None:
    """log(0) is -inf, which no estimator takes (R's lm stops too): DataError naming the term."""
    with pytest.raises(DataError, match=r"terms 'np\.log\(z\)' have infinite values"):
        fit("y ~ x + np.log(z)", small.assign(z=small["z"].where(small.index > 0, 0.0)))


@pytest.mark.parametrize("family", ["logit", "probit"])
def test_binary_outcome_must_be_zero_one(small: pd.DataFrame, family: str) -> None:
    """A binary outcome outside 0/1 is a DataError naming the column and values."""
    with pytest.raises(
        DataError, match=r"outcome 'yc' must be 0/1 or bool; found values 2"
    ):
        fit(
            "yc ~ x",
            small.assign(yc=small["yc"].clip(0, 2).replace(0, 1)),
            family=family,
        )
    as_bool = fit("yb ~ x", small.assign(yb=small["yb"].astype(bool)), family=family)
    assert as_bool == fit(
        "yb ~ x", small.assign(yb=small["yb"].astype(float)), family=family
    )


def test_poisson_outcome_must_be_non_negative(small: pd.DataFrame) -> None:
    """A negative count is a DataError naming the column and values."""
    with pytest.raises(
        DataError, match="poisson outcome 'y' must be non-negative; found"
    ):
        fit("y ~ x", small, family="poisson")


@pytest.mark.parametrize("family", ["ols", "logit", "probit", "poisson"])
def test_constant_outcome(small: pd.DataFrame, family: str) -> None:
    """A constant outcome cannot be modelled: EstimationError naming the outcome."""
    with pytest.raises(EstimationError, match="outcome 'yb' is constant"):
        fit("yb ~ x", small.assign(yb=1), family=family)


@pytest.mark.parametrize("family", ["logit", "probit"])
def test_perfect_separation(small: pd.DataFrame, family: str, recwarn) -> None:
    """Complete separation by x is an EstimationError naming x, with no warnings leaking."""
    separated = small.assign(yb=(small["x"] > 0).astype(int))
    with pytest.raises(EstimationError, match="separation.*separated by 'x'") as info:
        fit("yb ~ x + np.log(z)", separated, family=family)
    assert f"{family} model of 'yb'" in str(info.value)
    assert not [w for w in recwarn if "statsmodels" in w.filename]


@pytest.mark.parametrize("family", ["logit", "probit"])
def test_quasi_separation(small: pd.DataFrame, family: str) -> None:
    """Every arm c respondent has yb = 1: quasi-separation, named C(arm)[T.c]."""
    quasi = small.assign(yb=small["yb"].where(small["arm"] != "c", 1))
    with pytest.raises(EstimationError, match=r"separated by 'C\(arm\)\[T.c\]'"):
        fit("yb ~ x + C(arm)", quasi, family=family)


def test_poisson_separation(small: pd.DataFrame) -> None:
    """All-zero counts in arm c drive its coefficient to minus infinity: EstimationError."""
    quasi = small.assign(yc=small["yc"].where(small["arm"] != "c", 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(EstimationError, match=r"separated by 'C\(arm\)\[T.c\]'"):
            fit("yc ~ x + C(arm)", quasi, family="poisson")


def test_no_residual_degrees_of_freedom(small: pd.DataFrame) -> None:
    """As many rows as estimable coefficients: EstimationError naming the counts."""
    with pytest.raises(
        EstimationError, match="no residual degrees of freedom.*3 rows for 3"
    ):
        fit("y ~ x + z", small.iloc[:3])
    with pytest.raises(EstimationError, match="no residual degrees of freedom"):
        fit("y ~ x", small.iloc[:6].assign(fe=list("pqrstt")), absorb="fe")


def test_single_cluster(small: pd.DataFrame) -> None:
    """Clustered errors need at least two clusters."""
    with pytest.raises(EstimationError, match="at least 2 clusters"):
        fit("y ~ x", small.assign(g=1), cov="cluster:g")


@pytest.mark.parametrize(
    ("options", "culprit"),
    [
        ({"family": "gaussian"}, "family='gaussian'"),
        ({"cov": "HC4"}, "cov='HC4'"),
        ({"cov": "cluster:"}, "cov='cluster:'"),
        ({"cov": "hc1"}, "'HC1'"),
        ({"absorb": "fe", "family": "logit"}, "family='logit'"),
        (
            {"absorb": "fe", "cov": "HC2"},
            "cov='HC2' cannot be combined with absorb='fe'",
        ),
        (
            {"absorb": "fe", "cov": "HC3"},
            "cov='HC3' cannot be combined with absorb='fe'",
        ),
        ({"alpha": 95}, "alpha=95"),
    ],
)
def test_option_errors(small: pd.DataFrame, options: dict, culprit: str) -> None:
    """Options outside their allowed set are OptionErrors naming the option."""
    with pytest.raises(OptionError) as info:
        fit("y ~ x", small, **options)
    assert culprit in str(info.value)


# --- input scales and Satterthwaite degrees of freedom ---------------------------------


def _scale_data(n: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(10, 3, n),
            "common": (rng.random(n) < 0.5).astype(int),
            "rare": (np.arange(n) < n // 20).astype(int),
            "arm": rng.choice(["a", "b", "c"], n),
            "y": rng.normal(size=n),
        }
    )


def test_input_scale_is_one_for_every_dummy_and_two_sd_for_a_continuous_input():
    """Gelman's scaling: dummies (common, rare, factor levels, their interactions) have
    unit 1 whatever their prevalence; a continuous input 2 SD; x by a dummy 2 SD(x)."""
    data = _scale_data()
    fitted = fit("y ~ x + common + rare + C(arm) + x:common + rare:common", data)
    scale = fitted.input_scale
    two_sd = 2 * data["x"].std(ddof=1)
    assert scale["Intercept"] == 0
    assert scale["x"] == pytest.approx(two_sd)
    for dummy in ("common", "rare", "C(arm)[T.b]", "C(arm)[T.c]", "rare:common"):
        assert scale[dummy] == 1.0, dummy
    assert scale["x:common"] == pytest.approx(two_sd)
    # the design SD of a rare dummy is far below a common one's; its input scale is not
    assert fitted.design_sd["rare"] < 0.25 < fitted.design_sd["common"]


def test_input_scale_of_categorical_families_follows_the_terms():
    data = _scale_data().assign(y=lambda d: np.digitize(d["y"], [-0.5, 0.5]))
    multinomial = fit("y ~ x + rare", data, family="mnlogit")
    assert multinomial.input_scale["rare | y=1"] == 1.0
    assert multinomial.input_scale["x | y=2"] == pytest.approx(2 * data["x"].std())
    assert multinomial.satterthwaite_df.isin([np.inf]).all()
    ordered = fit("y ~ x + rare", data, family="ologit")
    assert ordered.input_scale["threshold 0|1"] == 0


def test_satterthwaite_df_matches_its_definition_and_is_small_for_rare_terms():
    """df_j = (sum_i c_ij)^2 / sum_i c_ij^2 with c_ij the squared row of X (X'X)^-1;
    invariant to rescaling a column; a rare dummy's few members give few df; clusters
    bound it by the number of clusters."""
    data = _scale_data()
    fitted = fit("y ~ x + common + rare", data)
    X = np.column_stack([np.ones(len(data)), data["x"], data["common"], data["rare"]])
    c = (X @ np.linalg.inv(X.T @ X)) ** 2
    expected = c.sum(axis=0) ** 2 / (c**2).sum(axis=0)
    np.testing.assert_allclose(fitted.satterthwaite_df.to_numpy(), expected)
    rescaled = fit("y ~ x + common + rare", data.assign(x=data["x"] * 100))
    np.testing.assert_allclose(rescaled.satterthwaite_df, fitted.satterthwaite_df)
    df = fitted.satterthwaite_df
    assert df["rare"] < 30 < 0.4 * len(data) < df["common"]
    clustered = fit(
        "y ~ x + common", data.assign(g=np.arange(len(data)) % 12), cov="cluster:g"
    )
    assert (clustered.satterthwaite_df <= 12 + 1e-9).all()
    logit = fit("common ~ x + rare", data, family="logit")
    assert (logit.satterthwaite_df > 1).all() and logit.satterthwaite_df["rare"] < 30


def test_joint_satterthwaite_df_is_the_wishart_match_and_one_term_is_the_per_term_df():
    """The joint df of one column is that column's df; of several, it lies between the
    smallest per-term df and the total; simulated sandwiches under the working model
    have the variance the matched Wishart says (within a seeded tolerance)."""
    from simval.regression import satterthwaite_df, standardised_scores

    data = _scale_data()
    X = np.column_stack([np.ones(len(data)), data["x"], data["common"], data["rare"]])
    scores = standardised_scores(X, information=np.ones(len(X)), score=np.ones(len(X)))
    per_term = satterthwaite_df(scores, clusters=None)
    for j in range(X.shape[1]):
        one = satterthwaite_df(scores[:, [j]], clusters=None, joint=True)
        assert one == pytest.approx(per_term[j])
    joint = satterthwaite_df(scores[:, 1:], clusters=None, joint=True)
    assert per_term[1:].min() < joint < len(X)
    fitted = fit("y ~ x + common + rare", data)
    assert fitted.wald_df == pytest.approx(joint)
    # replicates are tested against the original fit's dfs: a refit skips them
    refitted = fitted.refit(data)
    assert refitted == fitted
    assert np.isnan(refitted.wald_df) and refitted.satterthwaite_df.isna().all()
    # the sandwich of Gaussian scores: the summed variance of its standardised
    # entries is q(q + 1) / df, the matched Wishart's
    rng = np.random.default_rng(0)
    z = (
        scores[:, 1:]
        @ np.linalg.inv(np.linalg.cholesky(scores[:, 1:].T @ scores[:, 1:])).T
    )
    draws = np.array(
        [(z * rng.normal(size=(len(z), 1)) ** 2).T @ z for _ in range(4000)]
    )
    q = z.shape[1]
    assert draws.var(axis=0).sum() == pytest.approx(q * (q + 1) / joint, rel=0.08)
    clustered = fit(
        "y ~ x + common", data.assign(g=np.arange(len(data)) % 12), cov="cluster:g"
    )
    assert clustered.wald_df <= 12
