"""The tests behind a verdict (Wald, TOST), the three-way decision, and the new metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from simval.metrics import (
    coefficient_recovery,
    equivalence_limit,
    equivalence_p_value,
    geometric_mean,
    heterogeneity,
    hotelling_p_value,
    nonresponse_scale,
    wald_equality,
    wasserstein,
)
from simval.results import (
    CONSISTENT,
    INCONSISTENT,
    UNDETERMINED,
    decide,
    verdict_sentence,
)

fast = settings(max_examples=60, deadline=None)


# --- equivalence (TOST) ----------------------------------------------------------------


def test_tost_closed_form():
    # diff 0.1, se 0.1, margin 0.3: the larger one-sided p is P(Z < (0.1 - 0.3)/0.1)
    p = equivalence_p_value(diff=0.1, std_error=0.1, margin=0.3)
    assert p == pytest.approx(scipy.stats.norm.cdf(-2.0))
    assert math.isnan(equivalence_p_value(diff=0.1, std_error=0.1, margin=np.nan))
    assert math.isnan(equivalence_p_value(diff=0.1, std_error=0.1, margin=0.0))


@fast
@given(st.floats(-5, 5), st.floats(0.01, 3), st.floats(0.01, 5), st.floats(0.01, 5))
def test_tost_is_a_p_value_falling_with_the_margin(diff, se, small, extra):
    narrow = equivalence_p_value(diff=diff, std_error=se, margin=small)
    wide = equivalence_p_value(diff=diff, std_error=se, margin=small + extra)
    assert 0 <= wide <= narrow <= 1
    # never below the p-value a difference of exactly 0 would get: equivalence
    # cannot be shown with a margin under ~1.645 standard errors
    floor = equivalence_p_value(diff=0.0, std_error=se, margin=small)
    assert narrow >= floor - 1e-12


# --- Wald ------------------------------------------------------------------------------


def _series(values, terms=("a", "b")):
    return pd.Series(values, index=list(terms), dtype=float)


def _matrix(values, terms=("a", "b")):
    return pd.DataFrame(values, index=list(terms), columns=list(terms), dtype=float)


def test_wald_with_one_term_is_the_squared_z():
    human = _series([1.0], terms=("a",))
    vcov = _matrix([[0.04]], terms=("a",))
    reps = [_series([1.3], terms=("a",)), _series([1.5], terms=("a",))]
    rep_vcov = [_matrix([[0.09]], terms=("a",))] * 2
    test = wald_equality(
        human_estimate=human, human_vcov=vcov, sim_estimates=reps,
        sim_vcovs=rep_vcov, terms=["a"],
    )  # fmt: skip
    z = 0.4 / math.sqrt(0.04 + 0.09 / 2)
    assert test.statistic == pytest.approx(z**2)
    assert test.df == 1 and test.n_reps == 2
    assert test.p_value == pytest.approx(2 * scipy.stats.norm.sf(z))


def test_wald_joint_uses_the_covariance():
    human = _series([0.0, 0.0])
    vcov = _matrix([[1.0, 0.5], [0.5, 1.0]])
    reps = [_series([1.0, 1.0])]
    zero = _matrix([[0.0, 0.0], [0.0, 0.0]])
    test = wald_equality(
        human_estimate=human, human_vcov=vcov, sim_estimates=reps,
        sim_vcovs=[zero], terms=["a", "b"],
    )  # fmt: skip
    d = np.array([1.0, 1.0])
    assert test.statistic == pytest.approx(d @ np.linalg.inv(vcov.to_numpy()) @ d)
    assert test.df == 2


def test_wald_leaves_out_failed_replicates_and_human_aliased_terms():
    human = _series([0.0, np.nan])
    vcov = _matrix([[1.0, np.nan], [np.nan, np.nan]])
    reps = [_series([2.0, 1.0]), _series([np.nan, 1.0]), pd.Series(dtype=float)]
    rep_vcov = [_matrix([[1.0, 0.0], [0.0, 1.0]])] * 2 + [pd.DataFrame()]
    test = wald_equality(
        human_estimate=human, human_vcov=vcov, sim_estimates=reps,
        sim_vcovs=rep_vcov, terms=["a", "b"],
    )  # fmt: skip
    assert test.terms == ("a",) and test.n_reps == 1
    assert test.statistic == pytest.approx(4 / 2)


def test_wald_without_a_usable_replicate_is_nan():
    test = wald_equality(
        human_estimate=_series([0.0, 0.0]), human_vcov=_matrix(np.eye(2)),
        sim_estimates=[pd.Series(dtype=float)], sim_vcovs=[pd.DataFrame()],
        terms=["a", "b"],
    )  # fmt: skip
    assert math.isnan(test.p_value) and test.n_reps == 0


# --- nonresponse never widens an interval ------------------------------------------------


def test_nonresponse_scale():
    scale = nonresponse_scale(100, [100, 50, 120], reps=3)
    np.testing.assert_allclose(scale, [1.0, math.sqrt(0.5), 1.0])
    np.testing.assert_allclose(nonresponse_scale(None, None, reps=2), [1.0, 1.0])


def test_coverage_of_a_replicate_with_fewer_rows_uses_the_full_sample_precision():
    human = pd.DataFrame(
        {"term": ["x"], "estimate": [0.0], "std_error": [1.0], "statistic": [0.0],
         "p_value": [1.0], "ci_low": [-1.96], "ci_high": [1.96]}
    )  # fmt: skip
    # |3 - 0| <= 1.96 sqrt(1 + 2^2) = 4.38 covers; scaled to half the rows, the
    # replicate's error is 2 sqrt(0.5) and 1.96 sqrt(1 + 2) = 3.39 still covers;
    # at estimate 3.5: unscaled covers, scaled does not.
    replicate = human.assign(estimate=3.5, std_error=2.0)
    unscaled = coefficient_recovery(human, [replicate])
    scaled = coefficient_recovery(human, [replicate], human_nobs=100, sim_nobs=[50])
    assert unscaled.coverage == 1 and scaled.coverage == 0


# --- decisions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "inputs, expected",
    [
        ({"n_terms": 0}, UNDETERMINED),
        ({"failed_share": 0.6}, INCONSISTENT),
        ({"equivalence_p_value": 0.01}, CONSISTENT),
        ({"equivalence_p_value": 0.01, "wald_p_value": 0.001}, CONSISTENT),
        ({"wald_p_value": 0.01}, INCONSISTENT),
        ({}, UNDETERMINED),
        ({"wald_p_value": math.nan, "equivalence_p_value": math.nan}, UNDETERMINED),
    ],
)
def test_decide(inputs, expected):
    settings_ = {
        "n_terms": 3, "failed_share": 0.0, "wald_p_value": 0.4,
        "equivalence_p_value": 0.3, "alpha": 0.05,
    } | inputs  # fmt: skip
    decision, reason = decide(**settings_)
    assert decision == expected and reason


def test_verdict_sentence_states_the_decision():
    row = {"formula": "y ~ x", "decision": INCONSISTENT, "reason": "Wald p = 0.001"}
    text = verdict_sentence(row, simulator="base")
    assert "inconsistent" in text and "y ~ x" in text and "base" in text


# --- distances and summaries ----------------------------------------------------------------


def test_wasserstein_respects_order():
    codes = (1, 2, 3, 4, 5)
    assert wasserstein([1, 1], [2, 2], codes=codes) == pytest.approx(0.25)
    assert wasserstein([1, 1], [5, 5], codes=codes) == pytest.approx(1.0)
    assert wasserstein([1, 2, 3], [3, 2, 1], codes=codes) == 0
    assert math.isnan(wasserstein([], [1], codes=codes))


@fast
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=30),
    st.lists(st.integers(1, 5), min_size=1, max_size=30),
)
def test_wasserstein_is_a_bounded_symmetric_distance(a, b):
    codes = (1, 2, 3, 4, 5)
    d = wasserstein(a, b, codes=codes)
    assert 0 <= d <= 1 + 1e-12
    assert d == pytest.approx(wasserstein(b, a, codes=codes))
    assert wasserstein(a, a, codes=codes) == 0


def test_geometric_mean_of_ratios():
    assert geometric_mean([0.5, 2.0]) == pytest.approx(1.0)
    assert geometric_mean([4.0, np.nan, np.inf, 0.0]) == pytest.approx(4.0)
    assert math.isnan(geometric_mean([np.nan]))


def test_bias_corrected_entropy_depends_less_on_n():
    """Miller–Madow: the plug-in entropy of small samples is biased low; the correction
    moves the mean over small samples closer to the large-sample value."""
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(20))
    big = heterogeneity(
        pd.DataFrame({"a": rng.choice(20, 20000, p=probabilities)}), ["a"]
    )
    small = [
        heterogeneity(pd.DataFrame({"a": rng.choice(20, 60, p=probabilities)}), ["a"])
        for _ in range(200)
    ]
    plug_in = np.mean([h.entropy for h in small])
    corrected = np.mean([h.entropy_corrected for h in small])
    assert abs(corrected - big.entropy) < abs(plug_in - big.entropy) / 2


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(0, 1), st.sampled_from([0.0, 0.01, 0.05, 1.0])),
        min_size=1,
        max_size=30,
    )
)
def test_holm_equals_statsmodels(p_values):
    """simval's Holm adjustment (used for subgroup cells) is statsmodels' multipletests,
    ties and the clip at 1 included."""
    from statsmodels.stats.multitest import multipletests

    from simval.comparison import holm

    p = np.array(p_values)
    np.testing.assert_allclose(
        holm(p), multipletests(p, method="holm")[1], rtol=0, atol=1e-15
    )


# --- small-sample equivalence and Wald references ---------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    diff=st.floats(-5, 5),
    se=st.floats(0.01, 3),
    df=st.one_of(st.floats(2, 500), st.just(math.inf)),
    alpha=st.floats(0.01, 0.2),
    excess=st.floats(1e-6, 2),
)
def test_equivalence_limit_is_where_the_tost_starts_to_succeed(
    diff, se, df, alpha, excess
):
    """TOST at alpha shows equivalence for every margin above the limit and none below."""
    limit = float(equivalence_limit(diff=diff, std_error=se, alpha=alpha, df=df))
    above = equivalence_p_value(diff=diff, std_error=se, margin=limit + excess, df=df)
    assert above < alpha
    if limit - excess > 0:
        below = equivalence_p_value(
            diff=diff, std_error=se, margin=limit - excess, df=df
        )
        assert below >= alpha


def test_equivalence_p_value_with_df_is_the_t_tost():
    """Two one-sided t tests: fewer df, a larger p; infinite df, the normal TOST."""
    normal = equivalence_p_value(diff=0.1, std_error=0.2, margin=0.5)
    t10 = equivalence_p_value(diff=0.1, std_error=0.2, margin=0.5, df=10)
    assert float(t10) == pytest.approx(scipy.stats.t.sf(2.0, 10))
    assert float(normal) == pytest.approx(scipy.stats.norm.sf(2.0))
    assert t10 > normal
    assert equivalence_p_value(
        diff=0.1, std_error=0.2, margin=0.5, df=math.inf
    ) == pytest.approx(normal)


def test_hotelling_p_value_references():
    """Hotelling's T^2 through F; chi-squared at infinite df; NaN below q - 1 df."""
    q, nu, stat = 4, 30.0, 11.0
    expected = scipy.stats.f.sf(stat * (nu - q + 1) / (nu * q), q, nu - q + 1)
    assert hotelling_p_value(stat, q=q, nu=nu) == pytest.approx(expected)
    assert hotelling_p_value(stat, q=q, nu=math.inf) == pytest.approx(
        scipy.stats.chi2.sf(stat, q)
    )
    # the F reference is more conservative, and tends to chi-squared as nu grows
    assert hotelling_p_value(stat, q=q, nu=nu) > scipy.stats.chi2.sf(stat, q)
    assert hotelling_p_value(stat, q=q, nu=1e7) == pytest.approx(
        scipy.stats.chi2.sf(stat, q), rel=1e-4
    )
    assert math.isnan(hotelling_p_value(stat, q=q, nu=3.0))
    assert math.isnan(hotelling_p_value(stat, q=0, nu=nu))


def test_wald_equality_refers_to_hotelling_with_the_denominator_df():
    """With a finite denominator df the statistic is unchanged and its p-value is
    Hotelling's; without one, chi-squared."""
    terms = ["a", "b"]
    human = pd.Series([0.0, 0.0], index=terms)
    vcov = pd.DataFrame(np.eye(2) * 0.01, index=terms, columns=terms)
    sims = [pd.Series([0.2, -0.1], index=terms)]
    test = wald_equality(
        human_estimate=human, human_vcov=vcov, sim_estimates=sims,
        sim_vcovs=[vcov], terms=terms, denominator_df=12.0,
    )  # fmt: skip
    assert test.denominator_df == 12.0
    chi = wald_equality(
        human_estimate=human, human_vcov=vcov, sim_estimates=sims,
        sim_vcovs=[vcov], terms=terms,
    )  # fmt: skip
    assert chi.statistic == test.statistic
    assert chi.p_value == pytest.approx(scipy.stats.chi2.sf(chi.statistic, 2))
    assert test.p_value == pytest.approx(
        hotelling_p_value(test.statistic, q=2, nu=12.0)
    )
    assert test.p_value > chi.p_value


# --- margins and what a verdict can show, end to end ------------------------------------


def test_validate_margins_are_one_size_for_common_and_rare_dummies_and_verdicts_say_what_they_show():
    """Every dummy's margin is 2 x 0.1 outcome SDs whatever its prevalence; a continuous
    term's is 0.1 outcome SDs per SD; the verdict gives the bound the data show and,
    where 200 humans cannot show the margin, how many could."""
    import simval

    rng = np.random.default_rng(11)
    n = 200
    human = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "common": (rng.random(n) < 0.5).astype(int),
            "rare": (rng.random(n) < 0.06).astype(int),
            "group": rng.choice(["p", "q"], n),
        }
    )
    human["y"] = np.round(2 + human["x"] + human["common"] + rng.normal(size=n), 1)

    def perfect(personas, seed=None):
        noise = np.random.default_rng(seed).normal(size=len(personas))
        y = np.round(2 + personas["x"] + personas["common"] + noise, 1)
        return pd.DataFrame({"y": y}, index=personas.index)

    result = simval.validate(
        "y ~ x + common + rare", human, simval.FunctionSimulator(perfect),
        subgroups=["group"], reps=5, resamples=0, progress=False,
    )  # fmt: skip
    overall = result.coefficients.query("subgroup == 'overall'").set_index("term")
    sd_y = human["y"].std(ddof=1)
    assert overall.loc["common", "margin"] == pytest.approx(0.2 * sd_y)
    assert overall.loc["rare", "margin"] == pytest.approx(0.2 * sd_y)
    assert overall.loc["x", "margin"] == pytest.approx(0.1 * sd_y / human["x"].std())
    verdict = result.verdicts.iloc[0]
    # per term, the limit on the coefficient's scale beside its margin; the verdict's
    # bound is the largest in the margin's units (margin 0.1 = one tenth of a unit)
    judged = overall.loc[["x", "common", "rare"]]
    ratio = judged["equivalence_limit"] / judged["margin"]
    assert verdict["equivalence_bound"] == pytest.approx(0.1 * ratio.max())
    assert verdict["limiting_term"] in ("x", "common", "rare")
    assert f"the least precise term: {verdict['limiting_term']}" in verdict["reason"]
    assert not verdict["consistent_attainable"]
    assert verdict["humans_needed"] > n
    assert verdict["decision"] == UNDETERMINED
    assert "too few humans" in verdict["reason"]
    assert f"about {verdict['humans_needed']:,.0f} humans" in verdict["reason"]
    assert f"within ±{verdict['equivalence_bound']:.2f} SD" in verdict["reason"]
    assert math.isfinite(verdict["wald_denominator_df"])
    cells = result.recovery.query("subgroup == 'group'")
    assert cells["equivalence_bound"].notna().all()


def test_the_report_says_where_the_fresh_reference_is_not_proven_calibrated():
    """A logit with under 10 events per coefficient: the notes' warnings (which the
    report and the command print) say the reference is approximate there."""
    import simval

    rng = np.random.default_rng(5)
    n = 120
    human = pd.DataFrame({"x": rng.normal(size=n), "g": rng.integers(0, 2, size=n)})
    human["y"] = (rng.random(n) < 1 / (1 + np.exp(2 - human["x"]))).astype(int)
    result = simval.validate(
        "y ~ x + g", human, simval.MarginalSimulator(human), family="logit",
        reps=3, resamples=0, progress=False,
    )  # fmt: skip
    rarer = min(human["y"].sum(), n - human["y"].sum())
    assert rarer < 30
    assert any(
        "not proven calibrated" in w and "y ~ x + g" in w
        for w in result.notes["warnings"]
    )
    balanced = human.assign(y=(human["x"] > 0).astype(int) ^ (rng.random(n) < 0.3))
    calm = simval.validate(
        "y ~ x + g", balanced, simval.MarginalSimulator(balanced), family="logit",
        reps=3, resamples=0, progress=False,
    )  # fmt: skip
    assert not any("not proven calibrated" in w for w in calm.notes["warnings"])


def test_a_model_a_perfect_simulator_cannot_fit_either_is_undetermined_not_inconsistent():
    """Failing in most replicates is evidence against a simulator only where a perfect
    simulator (the fresh reference) fits the model."""
    common = {
        "n_terms": 3, "failed_share": 0.9, "wald_p_value": np.nan,
        "equivalence_p_value": np.nan, "alpha": 0.05,
    }  # fmt: skip
    decision, reason = decide(**common, reference_failed_share=1.0)
    assert decision == UNDETERMINED
    assert "perfect simulator" in reason and "100%" in reason
    assert decide(**common, reference_failed_share=0.1)[0] == INCONSISTENT
    assert decide(**common)[0] == INCONSISTENT


def test_wald_equality_falls_back_to_bonferroni_where_the_joint_test_has_no_df():
    """With nu <= q - 1 (few clusters) the joint test is unavailable; the per-term t
    tests with nu df, Bonferroni-adjusted, still reject a clear difference."""
    terms = ["a", "b", "c"]
    human = pd.Series([0.0, 0.0, 0.0], index=terms)
    vcov = pd.DataFrame(np.eye(3) * 0.01, index=terms, columns=terms)
    sims = [pd.Series([1.5, 0.0, 0.05], index=terms)]
    test = wald_equality(
        human_estimate=human, human_vcov=vcov, sim_estimates=sims,
        sim_vcovs=[vcov * 0], terms=terms, denominator_df=1.5,
    )  # fmt: skip
    assert test.method == "bonferroni"
    z = 1.5 / 0.1
    assert test.p_value == pytest.approx(3 * 2 * scipy.stats.t.sf(z, 1.5))
    assert test.p_value < 0.05
    decision, reason = decide(
        n_terms=3, failed_share=0.0, wald_p_value=test.p_value,
        equivalence_p_value=0.9, alpha=0.05, wald_method=test.method,
    )  # fmt: skip
    assert decision == INCONSISTENT and "Bonferroni" in reason


def test_uneven_resampled_clusters_are_not_nonresponse():
    """Replicates of resampled clusters of unequal sizes differ in size; a simulator
    that answers everyone has its standard errors left as they are (nonresponse is
    measured against the replicate's own personas, not the humans' count)."""
    import simval

    rng = np.random.default_rng(3)
    sizes = rng.integers(2, 40, size=30)
    site = np.repeat(np.arange(len(sizes)), sizes)
    n = len(site)
    human = pd.DataFrame({"site": site, "x": rng.normal(size=n)})
    human["y"] = np.round(human["x"] + rng.normal(size=n) + site % 3, 1)

    def perfect(personas, seed=None):
        noise = np.random.default_rng(seed).normal(size=len(personas))
        y = np.round(personas["x"] + noise + personas["site"] % 3, 1)
        return pd.DataFrame({"y": y}, index=personas.index)

    result = simval.validate(
        "y ~ x", human, simval.FunctionSimulator(perfect), cov="cluster:site",
        reps=6, resamples=0, progress=False,
    )  # fmt: skip
    reps = result.replicate_coefficients.query("term == 'x'")
    assert reps["nobs"].nunique() > 1  # replicate sizes differ
    shown = result.coefficients.query("subgroup == 'overall' and term == 'x'")
    assert shown["sim_std_error"].iloc[0] == pytest.approx(reps["std_error"].mean())
