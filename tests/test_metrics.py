"""Tests of simval.metrics: properties (hypothesis), closed forms, and every error."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import sklearn.metrics
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon

from simval.errors import DataError, OptionError
from simval.metrics import (
    Heterogeneity,
    Recovery,
    coefficient_recovery,
    heterogeneity,
    incoherence_flags,
    incoherence_flags_each,
    incoherence_rate,
    jsd,
    variance_ratio,
    wasserstein,
    weighted_variance,
)

# Few examples keep the suite fast; set per test so other modules keep their settings.
fast = settings(max_examples=40, deadline=None)

TERM_COLUMNS = [
    "term", "human_estimate", "human_std_error", "human_p_value", "human_ci_low",
    "human_ci_high", "human_class", "sim_estimate", "sim_std_error", "sim_class",
    "diff", "diff_std_error", "diff_ci_low", "diff_ci_high", "diff_z", "diff_p_value",
    "margin", "equivalence_p_value", "coverage", "se_ratio", "sign_agree", "sig_agree",
    "n_reps", "n_failed",
]  # fmt: skip

codes = st.lists(st.integers(1, 5), min_size=1, max_size=30)
reals = st.lists(
    st.floats(-100, 100, allow_nan=False).filter(lambda x: x != round(x)),
    min_size=1,
    max_size=30,
)
labels = st.lists(
    st.sampled_from(["agree", "neutral", "disagree"]), min_size=1, max_size=30
)
samples = st.one_of(codes, reals, labels)


def with_permutation(strategy):
    return strategy.flatmap(lambda xs: st.tuples(st.just(xs), st.permutations(xs)))


@st.composite
def probability_pairs(draw):
    n = draw(st.integers(1, 8))
    weights = st.lists(st.floats(0, 1), min_size=n, max_size=n).filter(
        lambda w: sum(w) > 0.01
    )
    p, q = np.array(draw(weights)), np.array(draw(weights))
    return p / p.sum(), q / q.sum()


# ------------------------------------------------------------------------------ jsd


@fast
@given(
    st.one_of(
        st.tuples(codes, codes), st.tuples(reals, reals), st.tuples(labels, labels)
    )
)
def test_jsd_samples_symmetric_and_bounded(pair):
    a, b = pair
    d = jsd(a, b)
    assert 0 <= d <= 1
    assert d == pytest.approx(jsd(b, a), abs=1e-12)


@fast
@given(probability_pairs())
def test_jsd_probabilities_symmetric_and_bounded(pair):
    p, q = pair
    d = jsd(p, q, kind="probabilities")
    assert 0 <= d <= 1
    assert d == pytest.approx(jsd(q, p, kind="probabilities"), abs=1e-12)


@fast
@given(with_permutation(samples))
def test_jsd_zero_for_a_sample_and_its_permutation(pair):
    a, b = pair
    assert jsd(a, a) == 0
    assert jsd(a, b) == 0


@fast
@given(probability_pairs())
def test_jsd_zero_for_equal_probabilities(pair):
    p, _ = pair
    assert jsd(p, p.copy(), kind="probabilities") == 0


@fast
@given(
    st.lists(st.integers(0, 4), min_size=1), st.lists(st.integers(10, 14), min_size=1)
)
def test_jsd_one_for_disjoint_samples(a, b):
    assert jsd(a, b) == pytest.approx(1, abs=1e-12)
    assert jsd([f"x{v}" for v in a], [f"y{v}" for v in b]) == pytest.approx(
        1, abs=1e-12
    )


@fast
@given(st.lists(st.floats(0, 1), min_size=2, max_size=8), st.integers(1, 7))
def test_jsd_one_for_disjoint_probabilities(weights, split):
    w = np.array(weights) + 0.01
    split = min(split, len(w) - 1)
    p = np.where(np.arange(len(w)) < split, w, 0)
    q = np.where(np.arange(len(w)) >= split, w, 0)
    assert jsd(p / p.sum(), q / q.sum(), kind="probabilities") == pytest.approx(
        1, abs=1e-12
    )


def test_jsd_closed_form():
    # m = [3/4, 1/4]; JSD = (KL(p||m) + KL(q||m)) / 2 in bits.
    expected = math.sqrt((math.log2(4 / 3) + 0.5 * math.log2(2 / 3) + 0.5 * 1) / 2)
    assert jsd([1, 0], [0.5, 0.5], kind="probabilities") == pytest.approx(
        expected, rel=1e-12
    )
    assert jsd([1, 1, 1], [1, 2, np.nan, 1, 2]) == pytest.approx(expected, rel=1e-12)
    assert jsd(["x"] * 3, pd.Series(["x", "y", None])) == pytest.approx(
        expected, rel=1e-12
    )


def test_jsd_clips_rounding_below_zero():
    p, q = np.array([0.1, 0.2, 0.7]), np.array([0.1 + 1e-16, 0.2, 0.7])
    with np.errstate(invalid="ignore"):
        assert math.isnan(jensenshannon(p, q, base=2))  # tiny negative divergence
    assert jsd(p, q, kind="probabilities") == 0


def test_jsd_discrete_versus_binned():
    # Integer codes are compared value by value; with bins they share histogram bins.
    assert jsd([1, 2], [3, 4]) == pytest.approx(1)
    assert jsd([1, 2], [3, 4], bins=1) == 0
    assert jsd([1.0, 2.0], [3.0, 4.0]) == pytest.approx(
        1
    )  # integer-valued floats are codes
    a, b = [0.1, 0.2, 0.7], [0.3, 0.8, 0.9]
    by_hand = jsd([2 / 3, 1 / 3], [1 / 3, 2 / 3], kind="probabilities")
    assert jsd(a, b, bins=[0, 0.5, 1]) == pytest.approx(by_hand, rel=1e-12)
    edges = np.histogram_bin_edges(a + b, bins="auto")
    p, q = np.histogram(a, edges)[0] / 3, np.histogram(b, edges)[0] / 3
    assert jsd(a, b) == pytest.approx(jsd(p, q, kind="probabilities"), rel=1e-12)


@pytest.mark.parametrize("continuous", [False, True])
def test_number_samples_take_the_fast_path_to_the_same_values(continuous):
    """Integer or float vectors (Series, arrays) are read with numpy alone; lists go
    through pandas: every sample metric gives the same number either way."""
    rng = np.random.default_rng(5)
    a, b = rng.integers(1, 6, size=200).astype(float), rng.integers(1, 6, size=150)
    if continuous:
        a = a + rng.random(200)
    a[rng.random(200) < 0.1] = np.nan
    for fast in ((pd.Series(a), pd.Series(b)), (a, b), (pd.Series(a), b)):
        assert jsd(*fast) == jsd(list(a), list(b))
        assert jsd(*fast, bins=7) == jsd(list(a), list(b), bins=7)
        assert wasserstein(*fast, codes=[1, 6]) == wasserstein(
            list(a), list(b), codes=[1, 6]
        )
        assert variance_ratio(*fast) == variance_ratio(list(a), list(b))


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "error", "pattern"),
    [
        (
            [1],
            [1],
            {"kind": "histogram"},
            OptionError,
            "kind='histogram'.*'samples'.*'probabilities'",
        ),
        ([], [1], {}, DataError, "^a is empty"),
        ([1], [np.nan, None], {}, DataError, "^b is empty"),
        ([1, np.inf], [1], {}, DataError, "^a holds infinite"),
        (["x"], ["y"], {"bins": 3}, DataError, "bins=3 needs numeric"),
        (
            [0.5, 0.5],
            [1.0],
            {"kind": "probabilities", "bins": 2},
            OptionError,
            "bins=2",
        ),
        (
            [0.5, 0.5],
            [1.0],
            {"kind": "probabilities"},
            DataError,
            "a and b .*equal length",
        ),
        (
            [1.5, -0.5],
            [0, 1],
            {"kind": "probabilities"},
            DataError,
            "^a holds negative",
        ),
        (
            [0.5, 0.5],
            [0.5, 0.6],
            {"kind": "probabilities"},
            DataError,
            "^b must sum to 1",
        ),
        (
            [0.5, np.nan],
            [0.5, 0.5],
            {"kind": "probabilities"},
            DataError,
            "^a holds missing",
        ),
        ([], [], {"kind": "probabilities"}, DataError, "^a must be a non-empty 1-D"),
        (["p"], [1.0], {"kind": "probabilities"}, DataError, "^a is not a vector"),
    ],
)
def test_jsd_errors(a, b, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        jsd(a, b, **kwargs)


# -------------------------------------------------------------------- variance_ratio

spread = st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=30).filter(
    lambda x: np.var(x) > 1e-3
)


@fast
@given(spread, st.floats(0.1, 10))
def test_variance_ratio_identity_and_scaling(x, c):
    x = np.array(x)
    assert variance_ratio(x, x) == 1
    assert variance_ratio(c * x, x) == pytest.approx(c**2, rel=1e-9)
    assert variance_ratio(x, c * x) == pytest.approx(c**-2, rel=1e-9)


def test_variance_ratio_conventions():
    assert variance_ratio([1, 2, 3, np.nan], [2, 4, 6]) == pytest.approx(0.25)
    assert variance_ratio([1, 2], [3, 3, 3]) == math.inf
    assert math.isnan(variance_ratio([2, 2], [3, 3, 3]))
    assert math.isnan(variance_ratio([1], [1, 2]))
    assert math.isnan(variance_ratio([1, 2], [np.nan, 2]))


@pytest.mark.parametrize("culprit", ["sim", "human"])
def test_variance_ratio_non_numeric(culprit):
    args = {"sim": [1, 2], "human": [1, 2], culprit: ["a", "b"]}
    with pytest.raises(DataError, match=f"^{culprit} must be numeric"):
        variance_ratio(**args)


# --------------------------------------------------------------------- heterogeneity

answers = st.lists(
    st.tuples(*[st.one_of(st.integers(1, 3), st.none())] * 3), min_size=0, max_size=30
)


@fast
@given(answers.flatmap(lambda rows: st.tuples(st.just(rows), st.permutations(rows))))
def test_heterogeneity_row_order_invariant(pair):
    rows, shuffled = pair
    items = ["q1", "q2", "q3"]
    first = heterogeneity(pd.DataFrame(rows, columns=items, dtype=float), items)
    second = heterogeneity(pd.DataFrame(shuffled, columns=items, dtype=float), items)
    assert (first.n, first.unique_patterns) == (second.n, second.unique_patterns)
    assert first.unique_patterns <= first.n
    if first.n:
        assert first.entropy == pytest.approx(second.entropy, abs=1e-12)
        assert 0 <= first.entropy <= math.log2(first.n) + 1e-12
    else:
        assert math.isnan(first.entropy) and math.isnan(second.entropy)


def test_heterogeneity_hand_example():
    df = pd.DataFrame(
        {
            "q1": [1, 1, 1, 1, 2, 2, 1],
            "q2": ["a", "a", "a", "a", "a", "a", None],
            "q3": [3, 3, 3, 4, 3, 3, 3],
            "other": range(7),  # not an item: ignored
        }
    )
    result = heterogeneity(df, ["q1", "q2", "q3"])
    # Patterns (1,a,3) x3, (1,a,4) x1, (2,a,3) x2; the last row lacks q2.
    freqs = np.array([3, 1, 2]) / 6
    assert (result.n, result.unique_patterns) == (6, 3)
    assert result.entropy == pytest.approx(-np.sum(freqs * np.log2(freqs)), rel=1e-12)
    single = heterogeneity(df, "q3")  # one item given as a string
    assert (single.n, single.unique_patterns) == (7, 2)
    assert single.entropy == pytest.approx(
        -(6 / 7) * math.log2(6 / 7) + math.log2(7) / 7
    )


def test_heterogeneity_empty():
    result = heterogeneity(
        pd.DataFrame({"q1": [np.nan, 1.0], "q2": [1.0, np.nan]}), ["q1", "q2"]
    )
    assert isinstance(result, Heterogeneity)
    assert (result.n, result.unique_patterns) == (0, 0)
    assert math.isnan(result.entropy)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.n = 1  # type: ignore[misc]


def test_heterogeneity_errors():
    df = pd.DataFrame({"q1": [1]})
    with pytest.raises(DataError, match="'q9'"):
        heterogeneity(df, ["q1", "q9"])
    with pytest.raises(DataError, match="items is empty"):
        heterogeneity(df, [])


@pytest.mark.parametrize("kind", ["int", "float", "nullable", "labels"])
def test_heterogeneity_counts_patterns_as_value_counts_does(kind):
    """Numeric items are counted without pandas' groupby; the counts, their order (first
    appearance, so the entropy sums alike) and the entropy equal value_counts' exactly."""
    rng = np.random.default_rng(4)
    df = pd.DataFrame(rng.integers(1, 4, size=(300, 3)), columns=["a", "b", "c"])
    df = {
        "int": df,
        "float": df.astype(float).mask(rng.random(df.shape) < 0.1),
        "nullable": df.astype("Int64").mask(rng.random(df.shape) < 0.1),
        "labels": df.astype(str).mask(rng.random(df.shape) < 0.1),
    }[kind]
    counts = df.dropna().value_counts(sort=False).to_numpy()
    result = heterogeneity(df, ["a", "b", "c"])
    assert (result.n, result.unique_patterns) == (counts.sum(), len(counts))
    assert result.entropy == scipy.stats.entropy(counts, base=2)


# ----------------------------------------------------------------- incoherence_rate

RULE = "belief == 1 and action == 0"
BELIEF_ACTION = pd.DataFrame(
    {
        "belief": [1, 1, 0, 1, np.nan, 1, 0],
        "action": [0, 1, 0, np.nan, 0, 0, 1],
    }
)


def make_coherence(belief="belief", action="action", rule=RULE):
    """A Coherence-like object."""
    return SimpleNamespace(belief=belief, action=action, rule=rule)


def test_incoherence_hand_example():
    # Rows 3 and 4 miss an answer; of the 5 others, rows 0 and 5 are incoherent.
    assert incoherence_rate(BELIEF_ACTION, make_coherence()) == pytest.approx(2 / 5)
    # A plain string has no belief/action pair; NaN comparisons are False: all 7 count.
    assert incoherence_rate(BELIEF_ACTION, RULE) == pytest.approx(2 / 7)
    # With nullable columns the rule itself is missing on unanswered rows.
    assert incoherence_rate(BELIEF_ACTION.astype("Int64"), RULE) == pytest.approx(2 / 5)
    assert incoherence_rate(
        BELIEF_ACTION.astype("Int64"), make_coherence()
    ) == pytest.approx(2 / 5)


def test_incoherence_no_eligible_row():
    assert math.isnan(incoherence_rate(BELIEF_ACTION.iloc[3:5], make_coherence()))


def test_incoherence_flags_each_is_flags_of_each_sample():
    """One evaluation of the stacked samples gives each sample its own flags; a sample
    lacking a column the rule reads gets the error it gets alone."""
    samples = [BELIEF_ACTION, BELIEF_ACTION.iloc[::-1], BELIEF_ACTION.astype("Int64")]
    got = incoherence_flags_each(samples, make_coherence())
    for sample, flags in zip(samples, got):
        expected = incoherence_flags(sample, make_coherence()).to_numpy()
        np.testing.assert_array_equal(flags, expected)
    with pytest.raises(DataError, match="action column 'action'"):
        incoherence_flags_each(
            [BELIEF_ACTION, BELIEF_ACTION.drop(columns="action")], make_coherence()
        )


@pytest.mark.parametrize(
    ("coherence", "pattern"),
    [
        (
            make_coherence(rule="belief == 1 and zz == 0"),
            "rule 'belief == 1 and zz == 0'.*'zz'",
        ),
        ("belief ==", "rule 'belief =='"),
        ("belief + action", "rule 'belief \\+ action' must give one boolean .*float"),
        (make_coherence(belief="trust"), "belief column 'trust'"),
        (make_coherence(action="share"), "action column 'share'"),
    ],
)
def test_incoherence_errors(coherence, pattern):
    with pytest.raises(DataError, match=pattern):
        incoherence_rate(BELIEF_ACTION, coherence)


# -------------------------------------------------------------- coefficient_recovery

COEF = ["term", "estimate", "std_error", "statistic", "p_value", "ci_low", "ci_high"]


def table(rows):
    """A coefficient table from (term, estimate, std_error, p_value, ci_low, ci_high)."""
    frame = pd.DataFrame(
        rows, columns=["term", "estimate", "std_error", "p_value", "ci_low", "ci_high"]
    )
    return frame.assign(statistic=frame["estimate"] / frame["std_error"])[COEF]


NAN = np.nan
HUMAN = table([
    ("x1", 1.0, 0.25, 0.001, 0.5, 1.5),    # positive
    ("x2", -0.5, 0.2, 0.01, -0.9, -0.1),   # negative
    ("x3", 0.2, 0.3, 0.5, -0.4, 0.8),      # null
    ("x4", NAN, NAN, NAN, NAN, NAN),       # not estimated in the human data
])  # fmt: skip
REPLICATES = [
    table([
        ("x1", 1.2, 0.3, 0.0001, 0.6, 1.8),   # positive
        ("x2", -0.3, 0.2, 0.13, -0.7, 0.1),   # null
        ("x3", 0.5, 0.2, 0.01, 0.1, 0.9),     # positive
        ("x4", 0.1, 0.1, 0.3, -0.1, 0.3),     # null
    ]),
    table([                                   # x2 missing: failed
        ("x3", -0.1, 0.3, 0.7, -0.7, 0.5),    # null (rows in another order)
        ("x1", 0.9, 0.1, 0.001, 0.4, 1.2),    # positive
        ("x4", 0.3, 0.1, 0.004, 0.1, 0.5),    # positive
    ]),
    table([
        ("x1", NAN, NAN, NAN, NAN, NAN),      # failed
        ("x2", -0.6, 0.25, 0.02, -1.1, -0.1), # negative
        ("x3", 0.2, 0.3, 0.5, -0.4, 0.8),     # null, identical to human
        ("x4", 0.2, 0.1, 0.05, 0.0, 0.4),     # null: p == alpha is not significant
        ("x5", 9.0, 1.0, 0.001, 7.0, 11.0),   # not a human term: ignored
    ]),
]  # fmt: skip


def test_coefficient_recovery_hand_example():
    result = coefficient_recovery(HUMAN, REPLICATES)
    terms = result.terms
    assert list(terms.columns) == TERM_COLUMNS
    expected = pd.DataFrame(
        {
            "term": ["x1", "x2", "x3", "x4"],
            "human_estimate": [1.0, -0.5, 0.2, NAN],
            "human_std_error": [0.25, 0.2, 0.3, NAN],
            "human_p_value": [0.001, 0.01, 0.5, NAN],
            "human_ci_low": [0.5, -0.9, -0.4, NAN],
            "human_ci_high": [1.5, -0.1, 0.8, NAN],
            "human_class": ["positive", "negative", "null", NAN],
            "sim_estimate": [1.05, -0.45, 0.2, 0.2],
            "sim_std_error": [0.2, 0.225, 0.8 / 3, 0.1],
            "sim_class": ["positive", "null", "null", "null"],
            "diff": [0.05, 0.05, 0.0, NAN],
            # sqrt(se_h^2 + mean(se_rep^2) / n_reps)
            "diff_std_error": [
                math.sqrt(0.0625 + (0.09 + 0.01) / 2 / 2),
                math.sqrt(0.04 + (0.04 + 0.0625) / 2 / 2),
                math.sqrt(0.09 + (0.04 + 0.09 + 0.09) / 3 / 3),
                NAN,
            ],
        }
    )
    z = 1.959963984540054
    expected["diff_ci_low"] = expected["diff"] - z * expected["diff_std_error"]
    expected["diff_ci_high"] = expected["diff"] + z * expected["diff_std_error"]
    expected["diff_z"] = expected["diff"] / expected["diff_std_error"]
    expected["diff_p_value"] = 2 * scipy.stats.norm.sf(expected["diff_z"].abs())
    expected = expected.assign(
        margin=NAN,
        equivalence_p_value=NAN,
        # |b_rep - b_h| <= z sqrt(se_h^2 + se_rep^2) for every estimating replicate here
        coverage=[2 / 3, 2 / 3, 1.0, NAN],
        se_ratio=[0.8, 1.125, (0.8 / 3) / 0.3, NAN],
        sign_agree=[2 / 3, 2 / 3, 2 / 3, NAN],
        sig_agree=[2 / 3, 1 / 3, 2 / 3, NAN],
        n_reps=[2, 2, 3, 3],
        n_failed=[1, 1, 0, 0],
    )
    pd.testing.assert_frame_equal(terms, expected, check_dtype=False, atol=1e-12)
    # Pairs over x1..x3 x 3 replicates (x4 has no human estimate):
    # sim classes x1 (+,+,0), x2 (0,0,-), x3 (+,0,0); human x1 +, x2 -, x3 0.
    # TP = 3, sim non-null = 4, human non-null = 6: P = 3/4, R = 1/2, F1 = 0.6.
    # Human-null pairs: x3 x 3, of which 1 has a non-null sim class.
    assert result.sign_f1 == pytest.approx(2 * (3 / 4) * (1 / 2) / (3 / 4 + 1 / 2))
    assert result.false_positive_rate == pytest.approx(1 / 3)
    assert result.coverage == pytest.approx(7 / 9)
    assert result.summary() == {
        "sign_f1": result.sign_f1,
        "false_positive_rate": result.false_positive_rate,
        "coverage": result.coverage,
        "alpha": 0.05,
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.alpha = 0.1  # type: ignore[misc]
    assert isinstance(result, Recovery)


def test_coefficient_recovery_alpha_changes_classes():
    result = coefficient_recovery(HUMAN, REPLICATES, alpha=0.001)
    # Only rep 0's x1 (p = 1e-4) is significant now; every human term is null. The
    # two failed pairs (x1 in rep 2, x2 in rep 1) are not counted as recovered nulls.
    assert list(result.terms["human_class"].iloc[:3]) == ["null"] * 3
    assert result.false_positive_rate == pytest.approx(1 / 7)
    assert result.sign_f1 == 0
    assert result.alpha == 0.001


def test_coefficient_recovery_exclude_keeps_rows_but_not_scalars():
    result = coefficient_recovery(HUMAN, REPLICATES, exclude=["x3"])
    pd.testing.assert_frame_equal(
        result.terms, coefficient_recovery(HUMAN, REPLICATES).terms
    )
    # Only x1 and x2 are scored: TP = 3, sim non-null = 3, human non-null = 6.
    assert result.sign_f1 == pytest.approx(2 * 3 / (3 + 6))
    assert math.isnan(result.false_positive_rate)
    assert result.coverage == pytest.approx(2 / 3)


def test_coefficient_recovery_modal_class_ties_go_to_null():
    human = table([("x", 1.0, 0.1, 0.001, 0.8, 1.2), ("y", 1.0, 0.1, 0.001, 0.8, 1.2)])
    up = table([("x", 1.0, 0.1, 0.001, 0.8, 1.2), ("y", 1.0, 0.1, 0.001, 0.8, 1.2)])
    down = table([("x", -1.0, 0.1, 0.001, -1.2, -0.8), ("y", 1.0, 0.1, 0.5, 0.8, 1.2)])
    result = coefficient_recovery(human, [up, down])
    assert list(result.terms["sim_class"]) == ["null", "null"]  # (+, -) and (+, null)
    assert (
        list(coefficient_recovery(human, [up, down, up]).terms["sim_class"])
        == ["positive"] * 2
    )


def test_coefficient_recovery_without_human_estimates():
    result = coefficient_recovery(HUMAN.iloc[3:], REPLICATES)
    assert math.isnan(result.sign_f1)
    assert math.isnan(result.false_positive_rate)
    assert math.isnan(result.coverage)
    assert result.terms["n_reps"].tolist() == [3]


def test_coefficient_recovery_failed_everywhere():
    empty = HUMAN.iloc[:0]
    result = coefficient_recovery(HUMAN.iloc[:3], [empty, empty])
    terms = result.terms
    assert terms["n_failed"].tolist() == [2, 2, 2]
    assert terms["sim_class"].tolist() == ["failed"] * 3
    assert terms[["sign_agree", "coverage"]].to_numpy().tolist() == [[0, 0]] * 3
    assert terms[["sim_estimate", "diff", "diff_std_error"]].isna().all().all()
    assert result.sign_f1 == 0
    # a failure never counts as recovering the human null term x3
    assert math.isnan(result.false_positive_rate)


@st.composite
def coefficient_tables(draw):
    n = draw(st.integers(1, 6))
    magnitude = st.floats(0.01, 10)
    estimate = np.array(draw(st.lists(magnitude, min_size=n, max_size=n)))
    estimate *= np.array(
        draw(st.lists(st.sampled_from([-1, 1]), min_size=n, max_size=n))
    )
    se = np.array(draw(st.lists(st.floats(0.01, 5), min_size=n, max_size=n)))
    p_value = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
    return table(
        {
            "term": [f"t{i}" for i in range(n)],
            "estimate": estimate,
            "std_error": se,
            "p_value": p_value,
            "ci_low": estimate - 1.96 * se,
            "ci_high": estimate + 1.96 * se,
        }
    )


@fast
@given(coefficient_tables(), st.integers(1, 4), st.randoms())
def test_coefficient_recovery_of_the_human_table_itself(human, n_reps, random):
    replicates = [
        human.sample(frac=1, random_state=random.randrange(2**32))
        for _ in range(n_reps)
    ]
    result = coefficient_recovery(human, replicates)
    terms = result.terms
    assert (terms["coverage"] == 1).all() and result.coverage == 1
    assert (terms["sign_agree"] == 1).all() and (terms["sig_agree"] == 1).all()
    # Means of equal floats are equal up to rounding.
    np.testing.assert_allclose(terms[["diff", "diff_z"]], 0, atol=1e-9)
    np.testing.assert_allclose(terms["se_ratio"], 1, rtol=1e-12)
    assert (terms["sim_class"] == terms["human_class"]).all()
    assert (terms["n_reps"] == n_reps).all() and (terms["n_failed"] == 0).all()
    if (terms["human_class"] != "null").any():
        assert result.sign_f1 == 1
    else:
        assert math.isnan(result.sign_f1)
    if (terms["human_class"] == "null").any():
        assert result.false_positive_rate == 0
    else:
        assert math.isnan(result.false_positive_rate)


@fast
@given(
    coefficient_tables(),
    st.lists(
        st.lists(
            st.tuples(st.floats(-3, 3), st.floats(0, 1), st.booleans()),
            min_size=6,
            max_size=6,
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_sign_f1_and_fpr_match_sklearn(human, draws):
    replicates, y_true, y_pred, estimated = [], [], [], []
    human_class = np.where(
        human["p_value"] < 0.05,
        np.where(human["estimate"] > 0, "positive", "negative"),
        "null",
    )
    for draw in draws:
        rows = [
            (t, e, 1.0, p, e - 2, e + 2)
            for t, (e, p, failed) in zip(human["term"], draw)
            if not failed
        ]
        replicates.append(table(rows))
        for cls, (e, p, failed) in zip(human_class, draw):
            significant = p < 0.05 and not failed and e != 0
            y_true.append(cls)
            estimated.append(not failed)
            y_pred.append(
                ("positive" if e > 0 else "negative") if significant else "null"
            )
    result = coefficient_recovery(human, replicates)
    if any(c != "null" for c in y_true + y_pred):
        expected = sklearn.metrics.f1_score(
            y_true, y_pred, labels=["positive", "negative"], average="micro"
        )
        assert result.sign_f1 == pytest.approx(expected, abs=1e-12)
    else:
        assert math.isnan(result.sign_f1)
    # the false-positive rate counts the pairs the replicate estimated (failures apart)
    kept = [(t, p) for t, p, e in zip(y_true, y_pred, estimated) if e]
    confusion = (
        sklearn.metrics.confusion_matrix(
            *zip(*kept), labels=["null", "positive", "negative"]
        )
        if kept
        else np.zeros((3, 3))
    )
    if confusion[0].sum():
        assert result.false_positive_rate == pytest.approx(
            confusion[0, 1:].sum() / confusion[0].sum()
        )
    else:
        assert math.isnan(result.false_positive_rate)


def test_coefficient_recovery_errors():
    with pytest.raises(OptionError, match="alpha=0"):
        coefficient_recovery(HUMAN, REPLICATES, alpha=0)
    with pytest.raises(OptionError, match="alpha=1.5"):
        coefficient_recovery(HUMAN, REPLICATES, alpha=1.5)
    with pytest.raises(
        DataError, match="human_table lacks column\\(s\\): 'p_value', 'ci_high'"
    ):
        coefficient_recovery(HUMAN.drop(columns=["p_value", "ci_high"]), REPLICATES)
    broken = [REPLICATES[0], REPLICATES[1].drop(columns="std_error")]
    with pytest.raises(
        DataError, match="sim_tables\\[1\\] lacks column\\(s\\): 'std_error'"
    ):
        coefficient_recovery(HUMAN, broken)
    with pytest.raises(DataError, match="sim_tables is empty"):
        coefficient_recovery(HUMAN, [])
    with pytest.raises(DataError, match="sim_tables must be a sequence"):
        coefficient_recovery(HUMAN, REPLICATES[0])
    with pytest.raises(DataError, match="human_table has duplicate term\\(s\\): 'x1'"):
        coefficient_recovery(pd.concat([HUMAN, HUMAN.iloc[:1]]), REPLICATES)
    doubled = [REPLICATES[0], pd.concat([REPLICATES[1], REPLICATES[1].iloc[1:2]])]
    with pytest.raises(DataError, match="sim_tables\\[1\\] has duplicate term 'x1'"):
        coefficient_recovery(HUMAN, doubled)
    with pytest.raises(DataError, match="human_table column 'estimate' is not numeric"):
        coefficient_recovery(HUMAN.assign(estimate="big"), REPLICATES)
    with pytest.raises(DataError, match="sim_tables column 'p_value' is not numeric"):
        coefficient_recovery(HUMAN, [REPLICATES[0].assign(p_value="small")])


# --- survey weights: a whole-number weight counts a row that many times --------------

weighted_samples = st.lists(
    st.tuples(st.sampled_from([1.0, 2.0, 3.0, np.nan]), st.integers(1, 4)),
    min_size=2,
    max_size=12,
).filter(lambda rows: sum(1 for v, _ in rows if not np.isnan(v)) >= 2)


def _expanded(rows: list[tuple[float, int]]) -> list[float]:
    """Each value repeated as often as its whole-number weight."""
    return [value for value, w in rows for _ in range(w)]


@fast
@given(weighted_samples, weighted_samples)
def test_weighted_distances_equal_the_rows_repeated(a, b):
    wa, wb = [w for _, w in a], [w for _, w in b]
    a_values, b_values = [v for v, _ in a], [v for v, _ in b]
    assert jsd(a_values, b_values, a_weights=wa, b_weights=wb) == pytest.approx(
        jsd(_expanded(a), _expanded(b)), abs=1e-12
    )
    codes = [1.0, 2.0, 3.0]
    assert wasserstein(
        a_values, b_values, codes=codes, a_weights=wa, b_weights=wb
    ) == pytest.approx(wasserstein(_expanded(a), _expanded(b), codes=codes), abs=1e-12)


@fast
@given(weighted_samples, st.floats(0.1, 10))
def test_weighted_variance_with_equal_weights_is_the_sample_variance(rows, scale):
    values = [v for v, _ in rows]
    assert weighted_variance(values, [scale] * len(values)) == pytest.approx(
        np.nanvar(values, ddof=1), abs=1e-12
    )


def test_weighted_variance_closed_form():
    x, w = np.array([1.0, 2.0, 4.0]), np.array([1.0, 2.0, 3.0])
    mean = (w * x).sum() / w.sum()
    expected = (w * (x - mean) ** 2).sum() / (w.sum() - (w**2).sum() / w.sum())
    assert weighted_variance(x, w) == pytest.approx(expected, rel=1e-12)
    assert weighted_variance(x, 5 * w) == pytest.approx(expected, rel=1e-12)
    assert variance_ratio(x, x, human_weights=w) == pytest.approx(
        np.var(x, ddof=1) / expected, rel=1e-12
    )


@fast
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(1, 4)),
        min_size=1,
        max_size=15,
    )
)
def test_weighted_patterns_and_incoherence_equal_the_rows_repeated(rows):
    df = pd.DataFrame(rows, columns=["belief", "action", "w"])
    repeated = df.loc[df.index.repeat(df["w"])]
    own, rep = (
        heterogeneity(df, ["belief", "action"], weights=df["w"]),
        heterogeneity(repeated, ["belief", "action"]),
    )
    assert own.unique_patterns == rep.unique_patterns
    assert own.entropy == pytest.approx(rep.entropy, abs=1e-12)
    kish = df["w"].sum() ** 2 / (df["w"] ** 2).sum()
    assert own.entropy_corrected == pytest.approx(
        own.entropy + (own.unique_patterns - 1) / (2 * kish * np.log(2)), abs=1e-12
    )
    rule = SimpleNamespace(
        belief="belief", action="action", rule="belief >= 1 and action == 0"
    )
    assert incoherence_rate(df, rule, weights=df["w"]) == pytest.approx(
        incoherence_rate(repeated, rule), abs=1e-12
    )


def test_equal_weights_change_no_metric():
    df = pd.DataFrame({"a": [1, 2, 2, 3, 1], "b": [0, 1, 1, 0, 0]})
    ones = np.ones(len(df))
    assert heterogeneity(df, ["a", "b"], weights=ones) == heterogeneity(df, ["a", "b"])
    assert jsd(df["a"], df["b"], a_weights=ones) == jsd(df["a"], df["b"])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: jsd([1, 2], [1, 2], a_weights=[1.0]),
            "a_weights must hold one positive finite weight per row: got 1 for 2",
        ),
        (
            lambda: jsd([1, 2], [1, 2], b_weights=[1.0, -1.0]),
            "b_weights must be positive",
        ),
        (
            lambda: jsd([0.5, 0.5], [0.5, 0.5], kind="probabilities", a_weights=[1, 1]),
            "kind='samples' only",
        ),
        (
            lambda: heterogeneity(pd.DataFrame({"a": [1, 2]}), ["a"], weights=[1.0]),
            "one positive finite weight per row",
        ),
        (
            lambda: wasserstein([1, 2], [1, 2], codes=[1, 2], a_weights=[0.0, 1.0]),
            "a_weights must be positive",
        ),
    ],
)
def test_bad_weights_are_named(call, message):
    with pytest.raises((DataError, OptionError), match=message):
        call()
