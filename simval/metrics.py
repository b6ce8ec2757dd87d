"""Distances and agreement measures between a synthetic and a human sample.

Pure functions on numbers and data frames, one per axis of the design:
distributional alignment (``jsd``), heterogeneity (``variance_ratio``,
``heterogeneity``), belief–action coherence (``incoherence_rate``) and coefficient
recovery (``coefficient_recovery``). Nothing here knows about simulators or models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Literal, Protocol

import numpy as np
import pandas as pd
import scipy.stats
from numpy.typing import ArrayLike
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as shannon_entropy

from simval.errors import DataError, OptionError, check_alpha, check_option

__all__ = [
    "CoherenceLike",
    "Heterogeneity",
    "NumberScale",
    "Recovery",
    "WaldTest",
    "coefficient_recovery",
    "equivalence_limit",
    "equivalence_p_value",
    "geometric_mean",
    "heterogeneity",
    "hotelling_p_value",
    "incoherence_flags",
    "incoherence_flags_each",
    "incoherence_rate",
    "jsd",
    "variance_ratio",
    "wald_equality",
    "wasserstein",
    "weighted_mean",
    "weighted_variance",
]

JsdKind = Literal["samples", "probabilities"]
JSD_KINDS: tuple[JsdKind, ...] = ("samples", "probabilities")

#: Columns every coefficient table must have (the tidy table of ``regression.fit``).
COEF_COLUMNS = (
    "term",
    "estimate",
    "std_error",
    "statistic",
    "p_value",
    "ci_low",
    "ci_high",
)
_NUMERIC = ("estimate", "std_error", "p_value", "ci_low", "ci_high")
_CLASS_LABELS = np.array(["negative", "null", "positive", "failed"])  # class code + 1
#: The columns of ``Recovery.terms``, in order (``coefficient_recovery`` defines each).
TERM_COLUMNS = (
    "term", "human_estimate", "human_std_error", "human_p_value", "human_ci_low",
    "human_ci_high", "human_class", "sim_estimate", "sim_std_error", "sim_class",
    "diff", "diff_std_error", "diff_ci_low", "diff_ci_high", "diff_z", "diff_p_value",
    "margin", "equivalence_p_value", "coverage", "se_ratio", "sign_agree", "sig_agree",
    "n_reps", "n_failed",
)  # fmt: skip
_COMPARISONS = (
    "diff", "diff_std_error", "diff_ci_low", "diff_ci_high", "diff_z", "diff_p_value",
    "equivalence_p_value", "coverage", "se_ratio", "sign_agree", "sig_agree",
)  # fmt: skip


# --------------------------------------------------------------------------- jsd


def jsd(
    a: ArrayLike,
    b: ArrayLike,
    *,
    kind: JsdKind = "samples",
    bins: int | str | Sequence[float] | None = None,
    a_weights: ArrayLike | None = None,
    b_weights: ArrayLike | None = None,
) -> float:
    """Jensen–Shannon distance (square root of the divergence, base 2) in [0, 1].

    0 means identical distributions, 1 disjoint supports. With
    ``kind="probabilities"``, ``a`` and ``b`` are probability vectors over the same
    outcomes (equal length, non-negative, each summing to 1 within 1e-8). With
    ``kind="samples"`` (default) they are two samples, NaN dropped, turned into
    distributions by this rule:

    * discrete data (non-numeric labels, or numbers that are all integer-valued, such
      as answer codes) and ``bins is None``: relative frequencies over the union of
      the values observed in either sample;
    * continuous data (numeric, not all integer-valued), or any numeric data when
      ``bins`` is given: histograms of both samples on shared edges
      ``np.histogram_bin_edges(pooled, bins=bins or "auto")`` of the pooled data
      (``bins`` is refused with probabilities and with non-numeric labels).

    ``a_weights`` / ``b_weights``: survey weights of a sample's rows (positive, one per
    row), so that its distribution is the weighted shares; None counts every row once.
    """
    check_option("kind", kind, JSD_KINDS)
    weighted = a_weights is not None or b_weights is not None
    if kind == "probabilities":
        if bins is not None:
            raise OptionError(
                f"bins={bins!r} applies to kind='samples' only, not to probabilities"
            )
        if weighted:
            raise OptionError(
                "a_weights and b_weights apply to kind='samples' only; weight the "
                "probabilities themselves"
            )
        p, q = _probabilities(a, "a"), _probabilities(b, "b")
        if len(p) != len(q):
            raise DataError(
                f"a and b must have equal length; got {len(p)} and {len(q)}"
            )
    elif weighted:
        (x, wx), (y, wy) = _weighted(a, a_weights, "a"), _weighted(b, b_weights, "b")
        p, q = _sample_distributions(x, y, bins=bins, weights=(wx, wy))
    else:
        p, q = _sample_distributions(_sample(a, "a"), _sample(b, "b"), bins=bins)
    with np.errstate(invalid="ignore"):
        distance = jensenshannon(p, q, base=2)
    # Rounding can push the divergence a hair below 0 (sqrt: nan) or the distance past 1.
    return 0.0 if np.isnan(distance) else float(min(distance, 1.0))


def _probabilities(x: ArrayLike, name: str) -> np.ndarray:
    try:
        p = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} is not a vector of probabilities: {exc}") from exc
    if p.ndim != 1 or p.size == 0:
        raise DataError(
            f"{name} must be a non-empty 1-D probability vector; got shape {p.shape}"
        )
    if not np.all(np.isfinite(p)):
        raise DataError(f"{name} holds missing or infinite probabilities")
    if np.any(p < 0):
        raise DataError(f"{name} holds negative probabilities (min {p.min():g})")
    if abs(p.sum() - 1.0) > 1e-8:
        raise DataError(f"{name} must sum to 1; it sums to {p.sum():.10g}")
    return p


def _numbers(x: ArrayLike) -> np.ndarray | None:
    """The non-missing values of a pandas or numpy vector of integers or floats, as
    floats; None for anything else (lists, booleans, labels), which goes through pandas.
    The fast path of the sample metrics: validate calls them thousands of times."""
    if not isinstance(x, pd.Series | np.ndarray) or x.ndim != 1:
        return None
    if getattr(x.dtype, "kind", "O") not in "iuf":
        return None
    values = (
        x.to_numpy(dtype=float, na_value=np.nan)
        if isinstance(x, pd.Series)
        else x.astype(float)
    )
    return values[~np.isnan(values)]


def _sample(x: ArrayLike, name: str) -> pd.Series | np.ndarray:
    """The non-missing values of a sample, checked: numbers as a float array (see
    ``_numbers``), anything else as a Series."""
    numbers = _numbers(x)
    if numbers is not None:
        if not len(numbers):
            raise DataError(f"{name} is empty (no non-missing values)")
        if np.isinf(numbers).any():
            raise DataError(f"{name} holds infinite values")
        return numbers
    sample = pd.Series(x).dropna()
    if sample.empty:
        raise DataError(f"{name} is empty (no non-missing values)")
    if pd.api.types.is_numeric_dtype(sample) and np.isinf(sample.to_numpy(float)).any():
        raise DataError(f"{name} holds infinite values")
    return sample.reset_index(drop=True)


def _sample_distributions(
    a: pd.Series | np.ndarray,
    b: pd.Series | np.ndarray,
    *,
    bins: int | str | Sequence[float] | None,
    weights: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
) -> tuple[np.ndarray, np.ndarray]:
    """Both samples' counts (weight sums under ``weights``) on shared outcomes: the
    values seen in either for discrete data, histogram bins for continuous."""
    wa, wb = weights
    if (
        isinstance(a, np.ndarray)
        and isinstance(b, np.ndarray)
        and weights == (None, None)
    ):
        return _number_distributions(a, b, bins=bins)
    a, b = pd.Series(a), pd.Series(b)
    pooled = pd.concat([a, b], ignore_index=True)
    numeric = pd.api.types.is_numeric_dtype(pooled)
    if bins is not None and not numeric:
        raise DataError(
            f"bins={bins!r} needs numeric samples; a or b holds non-numeric labels"
        )
    if not numeric or (bins is None and _integer_valued(pooled)):
        codes, values = pd.factorize(pooled)
        return (
            np.bincount(codes[: len(a)], weights=wa, minlength=len(values)),
            np.bincount(codes[len(a) :], weights=wb, minlength=len(values)),
        )
    edges = np.histogram_bin_edges(
        pooled.to_numpy(float), bins="auto" if bins is None else bins
    )
    return (
        np.histogram(a.to_numpy(float), edges, weights=wa)[0],
        np.histogram(b.to_numpy(float), edges, weights=wb)[0],
    )


def _number_distributions(
    a: np.ndarray, b: np.ndarray, *, bins: int | str | Sequence[float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """``_sample_distributions`` of two float arrays, with numpy alone (same counts, in
    the same order: codes by first appearance in the pooled values)."""
    pooled = np.concatenate([a, b])
    if bins is None and np.all(pooled == np.round(pooled)):
        codes, values = pd.factorize(pooled)
        return (
            np.bincount(codes[: len(a)], minlength=len(values)),
            np.bincount(codes[len(a) :], minlength=len(values)),
        )
    edges = np.histogram_bin_edges(pooled, bins="auto" if bins is None else bins)
    return np.histogram(a, edges)[0], np.histogram(b, edges)[0]


def _weighted(
    x: ArrayLike, weights: ArrayLike | None, name: str
) -> tuple[pd.Series, np.ndarray]:
    """A sample's non-missing values and their weights (ones without weights), checked."""
    values = pd.Series(np.asarray(x) if not isinstance(x, pd.Series) else x.to_numpy())
    w = (
        np.ones(len(values))
        if weights is None
        else _checked_weights(weights, rows=len(values), name=f"{name}_weights")
    )
    kept = values.notna().to_numpy()
    sample = _sample(values[kept], name)
    return pd.Series(sample), w[kept]


def _integer_valued(x: pd.Series) -> bool:
    values = x.to_numpy(float)
    return bool(np.all(values == np.round(values)))


@dataclass(frozen=True)
class NumberScale:
    """How a number item's answers are compared: ``span``, the distance
    ``wasserstein`` divides by (the declared scale's width, or the human answers' range
    for an open scale), and ``edges``, the bins the Jensen-Shannon distance counts
    answers in (None for whole numbers, each value its own outcome; for other numbers
    ``histogram_bin_edges(human, "auto")``, fixed once so every sample is binned alike,
    answers beyond them counted in the end bins)."""

    span: float
    edges: np.ndarray | None

    @classmethod
    def of(
        cls, human: ArrayLike, *, low: float | None, high: float | None, whole: bool
    ) -> NumberScale:
        """The scale of an item bounded by ``low``/``high`` (None: open) from the human
        answers (NaN dropped)."""
        values = _floats(human)
        if low is not None and high is not None:
            span = float(high - low)
        else:
            span = float(values.max() - values.min()) if len(values) else 0.0
        edges = (
            None if whole or not len(values) else np.histogram_bin_edges(values, "auto")
        )
        return cls(span=span, edges=edges)

    def bins(self, answers: ArrayLike) -> np.ndarray:
        """The outcome each answer counts as in the JSD: the value itself, or its bin's
        index (NaN stays NaN)."""
        values = np.asarray(pd.Series(answers, dtype=float), dtype=float)
        if self.edges is None:
            return values
        inner = self.edges[1:-1]
        return np.where(
            np.isnan(values), np.nan, np.searchsorted(inner, values, side="right")
        )


def wasserstein(
    a: ArrayLike,
    b: ArrayLike,
    *,
    codes: Sequence[float],
    a_weights: ArrayLike | None = None,
    b_weights: ArrayLike | None = None,
) -> float:
    """Earth mover's distance between two samples of answer codes, over the code range.

    Unlike JSD it respects the order of the options: moving answers from "agree" to
    "strongly agree" costs less than to "strongly disagree". Divided by
    max(codes) - min(codes), it lies in [0, 1] (1: all mass at opposite ends). NaN
    dropped; a sample with no answer gives NaN. ``a_weights`` / ``b_weights``: survey
    weights of a sample's rows, as in ``jsd``.
    """
    (x, wx), (y, wy) = (
        _float_weights(v, w, name)
        for v, w, name in ((a, a_weights, "a"), (b, b_weights, "b"))
    )
    span = float(max(codes) - min(codes)) if len(codes) else 0.0
    if not len(x) or not len(y):
        return float("nan")
    if span <= 0:
        return 0.0
    return float(scipy.stats.wasserstein_distance(x, y, wx, wy) / span)


def _float_weights(
    x: ArrayLike, weights: ArrayLike | None, name: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """The non-missing values of ``x`` as floats and their weights (None unweighted)."""
    if weights is None:
        return _floats(x), None
    if not len(pd.Series(x).dropna()):
        return np.array([]), None
    values, w = _weighted(pd.Series(x, dtype=float), weights, name)
    return values.to_numpy(float), w


def _floats(x: ArrayLike) -> np.ndarray:
    """The non-missing values of ``x`` as floats."""
    numbers = _numbers(x)
    if numbers is not None:
        return numbers
    return pd.Series(x, dtype=float).dropna().to_numpy()


def geometric_mean(values: ArrayLike) -> float:
    """Geometric mean of the positive finite values (ratios: 1/2 and 2 average to 1).

    NaN when there are none.
    """
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array) & (array > 0)]
    return float(np.exp(np.log(array).mean())) if len(array) else float("nan")


# --------------------------------------------------------------------- heterogeneity


def variance_ratio(
    sim: ArrayLike, human: ArrayLike, *, human_weights: ArrayLike | None = None
) -> float:
    """Sample variance (ddof=1, NaN dropped) of ``sim`` over that of ``human``.

    Below 1 the synthetic answers are less dispersed than the human ones. Conventions:
    human variance 0 and sim variance > 0 gives ``inf``; both 0 gives ``nan``
    (undefined); fewer than 2 values in either sample gives ``nan``. With
    ``human_weights`` (survey weights) the human variance is the weighted one
    (``weighted_variance``).
    """
    sim_var = _variance(sim, "sim")
    human_var = (
        _variance(human, "human")
        if human_weights is None
        else weighted_variance(human, human_weights)
    )
    if np.isnan(sim_var) or np.isnan(human_var) or (sim_var == 0 and human_var == 0):
        return float("nan")
    if human_var == 0:
        return float("inf")
    return sim_var / human_var


def _variance(x: ArrayLike, name: str) -> float:
    try:
        values = _floats(x)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be numeric: {exc}") from exc
    return float(np.var(values, ddof=1)) if len(values) >= 2 else float("nan")


def weighted_variance(x: ArrayLike, weights: ArrayLike) -> float:
    """The variance of ``x`` under survey weights (NaN dropped): sum w (x - mean_w)^2 over
    sum w - sum w^2 / sum w, numpy's ``cov(aweights=)``, which is the ddof=1 variance
    when the weights are equal; NaN with fewer than 2 values."""
    values, w = _weighted(pd.Series(x, dtype=float), weights, "human")
    if len(values) < 2:
        return float("nan")
    return float(np.cov(values.to_numpy(float), aweights=w))


@dataclass(frozen=True)
class Heterogeneity:
    """How varied the response patterns over a set of items are.

    ``n``: rows used (no missing answer in any item); ``unique_patterns``: distinct
    response vectors among them; ``entropy``: Shannon entropy in bits of the pattern
    frequencies (0 when everyone answers alike, log2(n) when all patterns differ);
    ``entropy_corrected``: the Miller–Madow bias-corrected entropy, entropy +
    (unique_patterns - 1) / (2 n ln 2) bits, whose expectation depends far less on n
    (the plug-in entropy of a small sample is biased low). Under survey weights the
    frequencies are weighted shares and n in the correction is Kish's effective
    sample size (sum w)^2 / sum w^2.
    """

    n: int
    unique_patterns: int
    entropy: float
    entropy_corrected: float


def heterogeneity(
    df: pd.DataFrame, items: Sequence[str], *, weights: ArrayLike | None = None
) -> Heterogeneity:
    """Count the distinct response patterns ("belief structures") over ``items``.

    ``items`` are column names (one name may be given as a string). Rows with a
    missing answer in any item are excluded. With no row left the result is
    ``n=0, unique_patterns=0, entropy=nan``. ``weights``: survey weights, one per row.
    """
    items = [items] if isinstance(items, str) else list(items)
    if not items:
        raise DataError("heterogeneity needs at least one item; items is empty")
    missing = [item for item in items if item not in df.columns]
    if missing:
        raise DataError(
            f"item column(s) not in the data: {', '.join(map(repr, missing))}"
        )
    w = None if weights is None else _row_weights(weights, df)
    n, counts, effective_n = _pattern_counts(df, items, weights=w)
    if not n:
        return Heterogeneity(
            n=0, unique_patterns=0, entropy=float("nan"), entropy_corrected=float("nan")
        )
    entropy = float(shannon_entropy(counts, base=2))
    return Heterogeneity(
        n=n,
        unique_patterns=len(counts),
        entropy=entropy,
        entropy_corrected=entropy + (len(counts) - 1) / (2 * effective_n * np.log(2)),
    )


def _row_weights(weights: ArrayLike, df: pd.DataFrame) -> np.ndarray:
    """Survey weights of the rows of ``df``, checked (``_checked_weights``)."""
    return _checked_weights(weights, rows=len(df), name="weights")


def _checked_weights(weights: ArrayLike, *, rows: int, name: str) -> np.ndarray:
    """``weights`` as floats, one positive finite weight per row, else a DataError
    naming ``name``."""
    w = np.asarray(weights, dtype=float)
    if w.shape != (rows,):
        raise DataError(
            f"{name} must hold one positive finite weight per row: got {w.size} "
            f"for {rows} rows"
        )
    if not np.all(np.isfinite(w) & (w > 0)):
        raise DataError(f"{name} must be positive and finite")
    return w


def _pattern_counts(
    df: pd.DataFrame, items: list[str], *, weights: np.ndarray | None = None
) -> tuple[int, np.ndarray, float]:
    """The complete rows' count, each distinct pattern's count over ``items`` (its weight
    sum under ``weights``) in order of first appearance (``value_counts(sort=False)``'s),
    so the entropy sums in the same order, and the effective number of complete rows
    (Kish's under weights).

    Columns of numbers or booleans are counted with factorised codes, far faster than
    pandas' groupby; other columns (labels, and categoricals, whose groupby also lists
    unobserved combinations) keep ``value_counts``.
    """
    columns = [df[item] for item in items]
    if weights is None and not all(
        getattr(c.dtype, "kind", "O") in "biuf" for c in columns
    ):
        answered = df[items].dropna()
        counts = answered.value_counts(sort=False).to_numpy()
        return len(answered), counts, float(len(answered))
    if all(getattr(c.dtype, "kind", "O") in "biuf" for c in columns):
        values = np.column_stack(
            [c.to_numpy(dtype=float, na_value=np.nan) for c in columns]
        )
        complete = ~np.isnan(values).any(axis=1)
    else:  # weighted labels: their codes (-1 missing) stand for them
        values = np.column_stack([pd.factorize(c)[0] for c in columns])
        complete = (values >= 0).all(axis=1)
    # one id per distinct row, numbered by first appearance: a column at a time, the
    # ids so far and the column's codes factorised together (ids stay below n)
    ids = np.zeros(int(complete.sum()), dtype=np.int64)
    for column in values[complete].T:
        codes, levels = pd.factorize(column)
        ids = pd.factorize(ids * len(levels) + codes)[0]
    if weights is None:
        return len(ids), np.bincount(ids), float(len(ids))
    w = weights[complete]
    effective = float(w.sum() ** 2 / (w**2).sum()) if len(w) else 0.0
    return len(ids), np.bincount(ids, weights=w), effective


# ------------------------------------------------------------------------- coherence


class CoherenceLike(Protocol):
    """A belief–action pair and the rule that flags an incoherent respondent."""

    @property
    def belief(self) -> str: ...

    @property
    def action(self) -> str: ...

    @property
    def rule(self) -> str: ...


def incoherence_rate(
    df: pd.DataFrame,
    coherence: CoherenceLike | str,
    *,
    weights: ArrayLike | None = None,
) -> float:
    """Share of eligible respondents for whom the incoherence rule is True.

    ``coherence.rule`` is a ``DataFrame.eval`` expression, True for an incoherent
    respondent. Eligible: the belief and the action are both answered (non-missing)
    and the rule's value is not missing. Given a plain rule string there is no
    belief/action pair, so every row whose rule value is not missing is eligible
    (with NaN answers a comparison is False, so pass a Coherence to exclude
    unanswered rows). No eligible row gives ``nan``. ``weights``: survey weights, one
    per row (the weighted share).
    """
    flags = incoherence_flags(df, coherence).to_numpy()
    w = np.ones(len(df)) if weights is None else _row_weights(weights, df)
    return weighted_mean(flags, w)


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """The weighted mean of the non-missing ``values``; NaN when none is."""
    kept = ~np.isnan(values)
    return (
        float(np.average(values[kept], weights=weights[kept]))
        if kept.any()
        else float("nan")
    )


def incoherence_flags(df: pd.DataFrame, coherence: CoherenceLike | str) -> pd.Series:
    """Per respondent: 1.0 incoherent, 0.0 coherent, NaN not eligible (see ``incoherence_rate``)."""
    if isinstance(coherence, str):
        rule, answered = coherence, pd.Series(True, index=df.index)
    else:
        rule = coherence.rule
        for role in ("belief", "action"):
            column = getattr(coherence, role)
            if column not in df.columns:
                raise DataError(
                    f"coherence {role} column {column!r} is not in the data"
                )
        answered = df[coherence.belief].notna() & df[coherence.action].notna()
    incoherent = _evaluate_rule(df, rule)
    eligible = answered & incoherent.notna()
    return incoherent.where(eligible).astype(float)


def incoherence_flags_each(
    samples: Sequence[pd.DataFrame], coherence: CoherenceLike
) -> list[np.ndarray]:
    """``incoherence_flags`` of each sample, as arrays, from one evaluation of the
    samples stacked: a rule judges one respondent at a time, and pandas' ``eval`` costs
    per call far more than per row. Where the stacked samples cannot be judged (a
    column some sample lacks) each is judged alone, raising the error it raises."""
    if not samples:
        return []
    common = [c for c in samples[0].columns if all(c in s.columns for s in samples)]
    stacked = pd.concat([sample[common] for sample in samples], ignore_index=True)
    try:
        flags = incoherence_flags(stacked, coherence).to_numpy()
    except DataError:
        return [incoherence_flags(sample, coherence).to_numpy() for sample in samples]
    return np.split(flags, np.cumsum([len(sample) for sample in samples])[:-1])


def _evaluate_rule(df: pd.DataFrame, rule: str) -> pd.Series:
    try:
        result = df.eval(rule)
    except (
        NameError,
        SyntaxError,
        TypeError,
        ValueError,
        KeyError,
        AttributeError,
    ) as exc:
        raise DataError(
            f"coherence rule {rule!r} could not be evaluated: {exc}"
        ) from exc
    if not isinstance(result, pd.Series) or not pd.api.types.is_bool_dtype(
        result.dtype
    ):
        got = result.dtype if isinstance(result, pd.Series) else type(result).__name__
        raise DataError(
            f"coherence rule {rule!r} must give one boolean per row; got {got}"
        )
    return result


# ---------------------------------------------------------------- coefficient recovery


@dataclass(frozen=True, eq=False)
class Recovery:
    """How well replicate synthetic samples recover the human regression coefficients.

    ``terms``: one row per human term (columns documented in
    ``coefficient_recovery``); the scalars pool every (term, replicate) pair of the
    terms with a defined human estimate; ``replicates`` holds the same scalars per
    replicate (columns rep, sign_f1, false_positive_rate, coverage), whose spread
    gives their Monte Carlo standard errors.
    """

    terms: pd.DataFrame
    sign_f1: float
    false_positive_rate: float
    coverage: float
    alpha: float
    replicates: pd.DataFrame

    def summary(self) -> dict[str, float]:
        """The scalar fields as a flat dict."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("terms", "replicates")
        }


def coefficient_recovery(
    human_table: pd.DataFrame,
    sim_tables: Sequence[pd.DataFrame],
    *,
    alpha: float = 0.05,
    exclude: Sequence[str] = (),
    margins: Mapping[str, float] | None = None,
    dfs: Mapping[str, float] | None = None,
    human_nobs: int | Sequence[int] | None = None,
    sim_nobs: Sequence[int] | None = None,
) -> Recovery:
    """Compare a human coefficient table with one table per synthetic replicate sample.

    Tables are tidy (``term, estimate, std_error, statistic, p_value, ci_low,
    ci_high``). A replicate that lacks a term, or has a NaN estimate for it, *failed*
    to estimate it. A term's class is "positive"/"negative" (sign of the estimate) if
    ``p_value < alpha``, else "null"; a failed replicate's class is "failed". Terms of
    the replicates that the human table lacks are ignored.

    Nonresponse never buys a wider interval: with ``human_nobs`` (the rows a replicate
    would have used answering everyone: the humans' count, or one per replicate) and
    ``sim_nobs`` (rows each fit used), a replicate that used fewer has its standard
    error scaled up to that count, ``se * sqrt(nobs_rep / nobs_expected)``.

    ``terms`` columns, one row per human term in human order:

    * ``human_*``: the human estimate, std_error, p_value, ci_low, ci_high and class;
    * ``sim_estimate, sim_std_error``: means over the ``n_reps`` replicates that
      estimated the term (``n_failed`` did not); ``sim_class``: the most frequent
      class over all replicates, "null" on a tie;
    * ``diff`` = sim_estimate - human_estimate, with ``diff_std_error`` =
      sqrt(se_h^2 + mean(se_rep^2) / n_reps) (independent human and synthetic
      samples; the mean of n_reps replicates), ``diff_ci_low/high`` = diff -/+
      z * diff_std_error (z the normal 1 - alpha/2 quantile), ``diff_z`` and the
      two-sided normal ``diff_p_value``;
    * ``margin`` (from ``margins``, NaN without) and ``equivalence_p_value``: the TOST
      p-value that |true difference| < margin, max(P(T > (diff + m)/se), P(T < (diff - m)/se)),
      T a t distribution with the term's degrees of freedom in ``dfs`` (the human fit's
      ``satterthwaite_df``: the difference's variance is mostly the humans'), normal
      without;
    * ``coverage``: share of all replicates whose difference CI,
      |b_rep - b_h| <= z * sqrt(se_h^2 + se_rep^2), contains 0 (a failed replicate
      does not cover); its nominal value is 1 - alpha at any sample-size ratio;
    * ``se_ratio`` = sim_std_error / human_std_error; ``sign_agree``, ``sig_agree``:
      shares of all replicates whose estimate has the human sign, whose class equals
      the human class (failed replicates disagree).

    A human row with a NaN estimate keeps its row with the comparison columns and
    ``human_class`` missing and is left out of the scalars; so are the terms named in
    ``exclude`` (e.g. the intercept, rarely a finding of the study). The scalars (the
    paper's definitions, Wang et al.):

    * ``sign_f1``: micro-averaged F1 over the classes "positive" and "negative",
      pooled over (term, replicate) pairs, 2·TP / (#sim non-null + #human non-null),
      TP the pairs whose significant sim class equals the human class; a failed pair
      counts as a miss (it is not a significant sim class); nan when both counts are 0;
    * ``false_positive_rate``: among pairs whose human class is "null" and whose
      replicate estimated the term, the share the replicate calls significant (a
      failure is reported in n_failed, never counted as recovering a null term);
    * ``coverage``: mean of the per-term coverage.
    """
    check_alpha(alpha)
    human, tables = _recovery_inputs(human_table, sim_tables)
    scale = nonresponse_scale(human_nobs, sim_nobs, reps=len(tables))
    est, se, p, _, _ = _replicate_grid(human["term"], tables)
    failed = np.isnan(est)
    se = np.where(failed, np.nan, se) * scale[None, :]
    h_est, h_p = (human[c].to_numpy()[:, None] for c in ("estimate", "p_value"))
    h_class = _classes(h_est, h_p, alpha)
    s_class = np.where(failed, FAILED, _classes(est, p, alpha))
    z = float(scipy.stats.norm.ppf(1 - alpha / 2))
    covered = np.abs(est - h_est) <= z * np.sqrt(
        human["std_error"].to_numpy()[:, None] ** 2 + se**2
    )
    terms = _term_table(
        human,
        est=est,
        se=se,
        classes=(h_class, s_class),
        covered=covered,
        z=z,
        margin=_per_term(human, margins, default=np.nan),
        df=_per_term(human, dfs, default=np.inf),
    )
    defined = ~np.isnan(h_est[:, 0])
    if not defined.all():  # pandas' masked assignment is slow: only when needed
        terms.loc[~defined, ["human_class", *_COMPARISONS]] = np.nan
    scored = defined & ~terms["term"].isin(exclude).to_numpy()
    h_scored, s_scored = np.broadcast_arrays(h_class[scored], s_class[scored])
    per_rep = pd.DataFrame(
        [
            {
                "rep": r,
                **_pooled(h_scored[:, [r]], s_scored[:, [r]], covered[scored][:, [r]]),
            }
            for r in range(len(tables))
        ],
        columns=["rep", "sign_f1", "false_positive_rate", "coverage"],
    )
    return Recovery(
        terms=terms,
        **_pooled(h_scored, s_scored, covered[scored]),
        alpha=alpha,
        replicates=per_rep,
    )


FAILED = 2
"""Class code of a (term, replicate) pair the replicate could not estimate."""


def _recovery_inputs(
    human_table: pd.DataFrame, sim_tables: Sequence[pd.DataFrame]
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """The human table and the replicate tables, checked (columns, unique human terms,
    at least one replicate, a sequence rather than one table)."""
    human = _coefficients(human_table, "human_table")
    if human["term"].duplicated().any():
        dups = human["term"][human["term"].duplicated()].unique().tolist()
        raise DataError(
            f"human_table has duplicate term(s): {', '.join(map(repr, dups))}"
        )
    if isinstance(sim_tables, pd.DataFrame):
        raise DataError(
            "sim_tables must be a sequence of tables, one per replicate; got one table"
        )
    tables = list(sim_tables)
    if not tables:
        raise DataError("sim_tables is empty; give at least one replicate table")
    for i, table in enumerate(tables):
        _check_columns(table, f"sim_tables[{i}]")
    return human, tables


def _per_term(
    human: pd.DataFrame, values: Mapping[str, float] | None, *, default: float
) -> np.ndarray:
    """``values`` per human term, in the human table's order (``default`` where absent)."""
    return np.array(
        [(values or {}).get(term, default) for term in human["term"]], dtype=float
    )


def _term_table(
    human: pd.DataFrame,
    *,
    est: np.ndarray,
    se: np.ndarray,
    classes: tuple[np.ndarray, np.ndarray],
    covered: np.ndarray,
    z: float,
    margin: np.ndarray,
    df: np.ndarray,
) -> pd.DataFrame:
    """The per-term comparison (``coefficient_recovery``'s ``terms``) from the replicate
    grids (terms x replicates; NaN where a replicate failed)."""
    h_class, s_class = classes
    h_est = human["estimate"].to_numpy()
    h_se = human["std_error"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        n_reps = (~np.isnan(est)).sum(axis=1)
        sim_estimate, sim_se = _row_mean(est), _row_mean(se)
        diff = sim_estimate - h_est
        diff_se = np.sqrt(h_se**2 + _row_mean(se**2) / n_reps)
        diff_z = diff / diff_se
        return pd.DataFrame(
            {
                "term": human["term"].to_numpy(),
                **{f"human_{c}": human[c].to_numpy() for c in _NUMERIC},
                "human_class": _CLASS_LABELS[h_class[:, 0] + 1],
                "sim_estimate": sim_estimate,
                "sim_std_error": sim_se,
                "sim_class": _CLASS_LABELS[_modal_class(s_class) + 1],
                "diff": diff,
                "diff_std_error": diff_se,
                "diff_ci_low": diff - z * diff_se,
                "diff_ci_high": diff + z * diff_se,
                "diff_z": diff_z,
                "diff_p_value": 2 * scipy.stats.norm.sf(np.abs(diff_z)),
                "margin": margin,
                "equivalence_p_value": equivalence_p_value(
                    diff=diff, std_error=diff_se, margin=margin, df=df
                ),
                "coverage": covered.mean(axis=1),
                "se_ratio": sim_se / h_se,
                "sign_agree": (np.sign(est) == np.sign(h_est[:, None])).mean(axis=1),
                "sig_agree": (s_class == h_class).mean(axis=1),
                "n_reps": n_reps,
                "n_failed": np.isnan(est).sum(axis=1),
            },
            columns=list(TERM_COLUMNS),
        )


def _pooled(
    human: np.ndarray, sim: np.ndarray, covered: np.ndarray
) -> dict[str, float]:
    """Sign-F1, false-positive rate and coverage pooled over (term, replicate) pairs."""
    significant = (sim != 0) & (sim != FAILED)
    true_positives = np.sum(significant & (sim == human))
    denominator = np.sum(significant) + np.sum(human != 0)
    null_pairs = (human == 0) & (sim != FAILED)
    return {
        "sign_f1": float(2 * true_positives / denominator) if denominator else np.nan,
        "false_positive_rate": float(np.mean(significant[null_pairs]))
        if null_pairs.any()
        else np.nan,
        "coverage": float(covered.mean(axis=1).mean()) if covered.size else np.nan,
    }


def nonresponse_scale(
    human_nobs: int | Sequence[int] | None,
    sim_nobs: Sequence[int] | None,
    *,
    reps: int,
) -> np.ndarray:
    """Per replicate, the factor sqrt(min(1, nobs_rep / nobs_expected)) on its standard errors.

    A simulator that leaves respondents unanswered fits on fewer rows, and its wider
    intervals would otherwise cover more often: its errors are scaled to the precision
    it would have had answering everyone, so nonresponse can never raise a score.
    ``human_nobs`` is the rows each replicate would have used then: the humans' count,
    or one count per replicate (replicates of resampled clusters differ in size).
    """
    if human_nobs is None or sim_nobs is None:
        return np.ones(reps)
    nobs = np.asarray(sim_nobs, dtype=float)
    expected = np.asarray(human_nobs, dtype=float)
    if len(nobs) != reps or expected.size not in (1, reps):
        raise DataError(f"sim_nobs has {len(nobs)} entries for {reps} replicate tables")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(np.minimum(1.0, np.where(expected > 0, nobs / expected, 1.0)))


def equivalence_p_value(
    *,
    diff: ArrayLike,
    std_error: ArrayLike,
    margin: ArrayLike,
    df: ArrayLike = np.inf,
) -> np.ndarray:
    """TOST p-value for |true difference| < margin (two one-sided t tests with ``df``
    degrees of freedom, normal where infinite; the larger p).

    NaN where the margin is missing or not positive.
    """
    diff, se, margin, df = (
        np.asarray(x, dtype=float) for x in (diff, std_error, margin, df)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = scipy.stats.t.sf((diff + margin) / se, df)
        upper = scipy.stats.t.cdf((diff - margin) / se, df)
    return np.where(margin > 0, np.maximum(lower, upper), np.nan)


def equivalence_limit(
    *, diff: ArrayLike, std_error: ArrayLike, alpha: float, df: ArrayLike = np.inf
) -> np.ndarray:
    """The smallest margin at which the TOST at ``alpha`` shows |true difference| <
    margin: |diff| + t(1 - alpha, df) * std_error, the far end of the 1 - 2 alpha
    interval. ``equivalence_p_value(margin=m) < alpha`` exactly when m exceeds it."""
    diff, se, df = (np.asarray(x, dtype=float) for x in (diff, std_error, df))
    return np.abs(diff) + scipy.stats.t.ppf(1 - alpha, df) * se


@dataclass(frozen=True)
class WaldTest:
    """Joint test that the simulator's coefficients equal the humans' on ``terms``.

    ``statistic`` = d' V^-1 d with d = mean replicate estimate - human estimate and
    V = V_human + mean(V_rep) / n_reps over the replicates that estimated every term
    (``n_reps`` of them), q = ``df`` the rank of V. ``p_value``: Hotelling's T^2
    approximation with ``denominator_df`` = nu, the degrees of freedom of V (the
    humans' joint Satterthwaite df, ``Fit.wald_df``: V is mostly the humans' sandwich,
    whose variability inflates d' V^-1 d in small samples), statistic (nu - q + 1) /
    (nu q) ~ F(q, nu - q + 1); chi-squared with q df where nu is infinite. Where nu <=
    q - 1 (too few rows or clusters carry the terms to estimate their joint covariance)
    the joint test is unavailable and ``p_value`` is Bonferroni's over the terms' own
    t tests with nu df, min(1, q min_j 2 P(T_nu > |d_j| / sqrt(V_jj))), still a level-
    alpha test of equality; ``method`` says which ("chi-squared", "hotelling" or
    "bonferroni"). NaN without a usable replicate or term.
    """

    terms: tuple[str, ...]
    statistic: float
    df: int
    p_value: float
    n_reps: int
    denominator_df: float = np.inf
    method: str = "chi-squared"


def wald_equality(
    *,
    human_estimate: pd.Series,
    human_vcov: pd.DataFrame,
    sim_estimates: Sequence[pd.Series],
    sim_vcovs: Sequence[pd.DataFrame],
    terms: Sequence[str],
    scales: Sequence[float] | None = None,
    denominator_df: float = np.inf,
) -> WaldTest:
    """Wald test of equal coefficients between the humans and the mean of the replicates.

    Estimates are Series and covariances DataFrames indexed by term; ``scales`` (the
    per-replicate ``nonresponse_scale``) multiply each replicate's standard errors;
    ``denominator_df`` is the degrees of freedom of the humans' covariance
    (``Fit.wald_df``; infinite: a chi-squared reference). Terms the humans could not
    estimate are left out; replicates missing any of the rest are left out of the
    mean.
    """
    terms = [t for t in terms if np.isfinite(human_estimate.get(t, np.nan))]
    factors = np.ones(len(sim_estimates)) if scales is None else np.asarray(scales)
    picked = [_at_terms(est, terms) for est in sim_estimates]
    complete = [r for r, est in enumerate(picked) if terms and np.isfinite(est).all()]
    if not terms or not complete:
        return WaldTest(tuple(terms), np.nan, 0, np.nan, len(complete))
    estimates = np.stack([picked[r] for r in complete])
    vcovs = np.stack(
        [_at_terms(sim_vcovs[r], terms) * factors[r] ** 2 for r in complete]
    )
    d = estimates.mean(axis=0) - _at_terms(human_estimate, terms)
    v = _at_terms(human_vcov, terms)
    v = v + vcovs.mean(axis=0) / len(complete)
    rank = int(np.linalg.matrix_rank(v))
    statistic = float(d @ np.linalg.pinv(v) @ d)
    nu = float(denominator_df)
    p_value = hotelling_p_value(statistic, q=rank, nu=nu)
    method = "chi-squared" if np.isinf(nu) else "hotelling"
    if rank and np.isnan(p_value) and nu > 0:
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.abs(d) / np.sqrt(np.diag(v))
        p_value = float(min(1.0, len(terms) * np.nanmin(2 * scipy.stats.t.sf(z, nu))))
        method = "bonferroni"
    return WaldTest(
        terms=tuple(terms),
        statistic=statistic,
        df=rank,
        p_value=p_value,
        n_reps=len(complete),
        denominator_df=nu,
        method=method,
    )


def hotelling_p_value(statistic: float, *, q: int, nu: float) -> float:
    """P(T^2 > statistic) for Hotelling's T^2 with dimension q and nu df, through
    T^2 (nu - q + 1) / (nu q) ~ F(q, nu - q + 1); chi-squared(q) for infinite nu;
    NaN without a dimension or where nu <= q - 1."""
    if not q or np.isnan(nu) or nu <= q - 1:
        return np.nan
    if np.isinf(nu):
        return float(scipy.stats.chi2.sf(statistic, q))
    scaled = statistic * (nu - q + 1) / (nu * q)
    return float(scipy.stats.f.sf(scaled, q, nu - q + 1))


def _at_terms(values: pd.Series | pd.DataFrame, terms: Sequence[str]) -> np.ndarray:
    """The entries for ``terms`` (rows, and columns of a matrix) as floats, NaN where a
    term is absent: ``reindex`` without building a new pandas object (a Wald test reads
    every replicate's estimates and covariance)."""
    array = values.to_numpy(dtype=float)
    rows = _positions(values.index, terms)
    if isinstance(values, pd.Series):
        return np.append(array, np.nan)[rows]
    columns = _positions(values.columns, terms)
    out = np.full((len(rows), len(columns)), np.nan)
    found_rows, found_columns = rows >= 0, columns >= 0
    out[np.ix_(found_rows, found_columns)] = array[
        np.ix_(rows[found_rows], columns[found_columns])
    ]
    return out


def _positions(index: pd.Index, terms: Sequence[str]) -> np.ndarray:
    """Each term's position in ``index``, -1 where it is absent (a dict: pandas' lookup
    costs more than the test); like ``reindex``, a repeated label is an error."""
    if not index.is_unique:
        raise DataError(f"repeated term(s) in {list(index[index.duplicated()])}")
    position = {label: i for i, label in enumerate(index.tolist())}
    return np.array([position.get(term, -1) for term in terms], dtype=np.intp)


def _check_columns(table: pd.DataFrame, name: str) -> None:
    missing = [c for c in COEF_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{name} lacks column(s): {', '.join(map(repr, missing))}")


def _coefficients(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """The coefficient columns, with a default index and float numeric columns."""
    _check_columns(table, name)
    out = table[list(COEF_COLUMNS)].reset_index(drop=True)
    for column in _NUMERIC:
        try:
            out[column] = out[column].astype(float)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{name} column {column!r} is not numeric: {exc}") from exc
    return out


def _replicate_grid(terms: pd.Series, tables: list[pd.DataFrame]) -> list[np.ndarray]:
    """Terms x replicates grids of estimate, std_error, p_value, ci_low, ci_high.

    A cell is NaN where the replicate has no row for the term. Checked as one stacked
    table would be (each column numeric, then no term twice in a replicate), but filled
    table by table: stacking costs more than the rest.
    """
    values = {
        column: [_numeric(table[column], "sim_tables", column) for table in tables]
        for column in _NUMERIC
    }
    names = [table["term"].reset_index(drop=True) for table in tables]
    for r, name in enumerate(names):
        duplicated = name.duplicated().to_numpy()
        if duplicated.any():
            term = name[duplicated.argmax()]
            raise DataError(f"sim_tables[{r}] has duplicate term {term!r}")
    index = pd.Index(terms)
    grids = [np.full((len(terms), len(tables)), np.nan) for _ in _NUMERIC]
    for r, name in enumerate(names):
        row = index.get_indexer(name)
        kept = row >= 0
        for grid, column in zip(grids, _NUMERIC):
            grid[row[kept], r] = values[column][r][kept]
    return grids


def _numeric(column: pd.Series, name: str, label: str) -> np.ndarray:
    """A table column as floats; DataError naming it if it is not numeric."""
    try:
        return column.astype(float).to_numpy()
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} column {label!r} is not numeric: {exc}") from exc


def _classes(estimate: np.ndarray, p_value: np.ndarray, alpha: float) -> np.ndarray:
    """Class codes: +1 positive, -1 negative, 0 null (not significant, no estimate)."""
    significant = (p_value < alpha) & ~np.isnan(estimate)
    return np.where(significant, np.sign(estimate), 0).astype(int)


def _modal_class(classes: np.ndarray) -> np.ndarray:
    """Per row, the most frequent class code; 0 (null) when the top count is shared."""
    codes = (-1, 0, 1, FAILED)
    counts = np.stack([(classes == c).sum(axis=1) for c in codes], axis=1)
    tied = (counts == counts.max(axis=1, keepdims=True)).sum(axis=1) > 1
    return np.where(tied, 0, np.array(codes)[counts.argmax(axis=1)])


def _row_mean(x: np.ndarray) -> np.ndarray:
    """Mean of each row over its non-NaN cells; NaN for a row with none."""
    with np.errstate(invalid="ignore"):
        return np.nansum(x, axis=1) / np.sum(~np.isnan(x), axis=1)


def nan_mean(values: Sequence[float] | pd.Series) -> float:
    """Mean of the non-missing values, NaN when there are none (no warning)."""
    array = np.asarray(values, dtype=float)
    array = array[~np.isnan(array)]
    return float(array.mean()) if len(array) else math.nan


def simulated_interval(terms: pd.DataFrame, *, alpha: float) -> dict[str, pd.Series]:
    """The simulated estimate's interval (``sim_ci_low``, ``sim_ci_high``) from a
    ``coefficient_recovery`` terms table: the mean estimate over the replicates ± the
    normal quantile times their mean standard error, the interval a report draws
    beside the humans'."""
    estimate = terms["sim_estimate"].astype(float)
    half = scipy.stats.norm.ppf(1 - alpha / 2) * terms["sim_std_error"].astype(float)
    return {"sim_ci_low": estimate - half, "sim_ci_high": estimate + half}
