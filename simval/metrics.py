"""Distances and agreement measures between a synthetic and a human sample.

Pure functions on numbers and data frames, one per axis of the design:
distributional alignment (``jsd``), heterogeneity (``variance_ratio``,
``heterogeneity``), belief–action coherence (``incoherence_rate``) and coefficient
recovery (``coefficient_recovery``). Nothing here knows about simulators or models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Literal, Protocol

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as shannon_entropy

from simval.errors import DataError, OptionError, check_option

__all__ = [
    "CoherenceLike",
    "Heterogeneity",
    "Recovery",
    "coefficient_recovery",
    "heterogeneity",
    "incoherence_rate",
    "jsd",
    "variance_ratio",
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
_CLASS_LABELS = np.array(["negative", "null", "positive"])  # indexed by class code + 1
_TERM_COLUMNS = (
    "term", "human_estimate", "human_std_error", "human_p_value", "human_ci_low",
    "human_ci_high", "human_class", "sim_estimate", "sim_std_error", "sim_ci_low",
    "sim_ci_high", "sim_class", "bias", "std_diff", "se_ratio", "sign_agree",
    "sig_agree", "ci_overlap", "coverage", "n_reps", "n_failed",
)  # fmt: skip
_COMPARISONS = (
    "bias",
    "std_diff",
    "se_ratio",
    "sign_agree",
    "sig_agree",
    "ci_overlap",
    "coverage",
)


# --------------------------------------------------------------------------- jsd


def jsd(
    a: ArrayLike,
    b: ArrayLike,
    *,
    kind: JsdKind = "samples",
    bins: int | str | Sequence[float] | None = None,
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
    """
    check_option("kind", kind, JSD_KINDS)
    if kind == "probabilities":
        if bins is not None:
            raise OptionError(
                f"bins={bins!r} applies to kind='samples' only, not to probabilities"
            )
        p, q = _probabilities(a, "a"), _probabilities(b, "b")
        if len(p) != len(q):
            raise DataError(
                f"a and b must have equal length; got {len(p)} and {len(q)}"
            )
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


def _sample(x: ArrayLike, name: str) -> pd.Series:
    sample = pd.Series(x).dropna()
    if sample.empty:
        raise DataError(f"{name} is empty (no non-missing values)")
    if pd.api.types.is_numeric_dtype(sample) and np.isinf(sample.to_numpy(float)).any():
        raise DataError(f"{name} holds infinite values")
    return sample.reset_index(drop=True)


def _sample_distributions(
    a: pd.Series, b: pd.Series, *, bins: int | str | Sequence[float] | None
) -> tuple[np.ndarray, np.ndarray]:
    pooled = pd.concat([a, b], ignore_index=True)
    numeric = pd.api.types.is_numeric_dtype(pooled)
    if bins is not None and not numeric:
        raise DataError(
            f"bins={bins!r} needs numeric samples; a or b holds non-numeric labels"
        )
    if not numeric or (bins is None and _integer_valued(pooled)):
        codes, values = pd.factorize(pooled)
        return (
            np.bincount(codes[: len(a)], minlength=len(values)),
            np.bincount(codes[len(a) :], minlength=len(values)),
        )
    edges = np.histogram_bin_edges(
        pooled.to_numpy(float), bins="auto" if bins is None else bins
    )
    return np.histogram(a.to_numpy(float), edges)[0], np.histogram(
        b.to_numpy(float), edges
    )[0]


def _integer_valued(x: pd.Series) -> bool:
    values = x.to_numpy(float)
    return bool(np.all(values == np.round(values)))


# --------------------------------------------------------------------- heterogeneity


def variance_ratio(sim: ArrayLike, human: ArrayLike) -> float:
    """Sample variance (ddof=1, NaN dropped) of ``sim`` over that of ``human``.

    Below 1 the synthetic answers are less dispersed than the human ones. Conventions:
    human variance 0 and sim variance > 0 gives ``inf``; both 0 gives ``nan``
    (undefined); fewer than 2 values in either sample gives ``nan``.
    """
    sim_var, human_var = _variance(sim, "sim"), _variance(human, "human")
    if np.isnan(sim_var) or np.isnan(human_var) or (sim_var == 0 and human_var == 0):
        return float("nan")
    if human_var == 0:
        return float("inf")
    return sim_var / human_var


def _variance(x: ArrayLike, name: str) -> float:
    try:
        values = pd.Series(x, dtype=float).dropna().to_numpy()
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be numeric: {exc}") from exc
    return float(np.var(values, ddof=1)) if len(values) >= 2 else float("nan")


@dataclass(frozen=True)
class Heterogeneity:
    """How varied the response patterns over a set of items are.

    ``n``: rows used (no missing answer in any item); ``unique_patterns``: distinct
    response vectors among them; ``entropy``: Shannon entropy in bits of the pattern
    frequencies (0 when everyone answers alike, log2(n) when all patterns differ).
    """

    n: int
    unique_patterns: int
    entropy: float


def heterogeneity(df: pd.DataFrame, items: Sequence[str]) -> Heterogeneity:
    """Count the distinct response patterns ("belief structures") over ``items``.

    ``items`` are column names (one name may be given as a string). Rows with a
    missing answer in any item are excluded. With no row left the result is
    ``n=0, unique_patterns=0, entropy=nan``.
    """
    items = [items] if isinstance(items, str) else list(items)
    if not items:
        raise DataError("heterogeneity needs at least one item; items is empty")
    missing = [item for item in items if item not in df.columns]
    if missing:
        raise DataError(
            f"item column(s) not in the data: {', '.join(map(repr, missing))}"
        )
    answered = df[items].dropna()
    if answered.empty:
        return Heterogeneity(n=0, unique_patterns=0, entropy=float("nan"))
    counts = answered.value_counts(sort=False).to_numpy()
    return Heterogeneity(
        n=len(answered),
        unique_patterns=len(counts),
        entropy=float(shannon_entropy(counts, base=2)),
    )


# ------------------------------------------------------------------------- coherence


class CoherenceLike(Protocol):
    """A belief–action pair and the rule that flags an incoherent respondent."""

    @property
    def belief(self) -> str: ...

    @property
    def action(self) -> str: ...

    @property
    def rule(self) -> str: ...


def incoherence_rate(df: pd.DataFrame, coherence: CoherenceLike | str) -> float:
    """Share of eligible respondents for whom the incoherence rule is True.

    ``coherence.rule`` is a ``DataFrame.eval`` expression, True for an incoherent
    respondent. Eligible: the belief and the action are both answered (non-missing)
    and the rule's value is not missing. Given a plain rule string there is no
    belief/action pair, so every row whose rule value is not missing is eligible
    (with NaN answers a comparison is False, so pass a Coherence to exclude
    unanswered rows). No eligible row gives ``nan``.
    """
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
    if not eligible.any():
        return float("nan")
    return float(incoherent[eligible].astype(bool).mean())


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
    terms with a defined human estimate.
    """

    terms: pd.DataFrame
    sign_f1: float
    false_positive_rate: float
    coverage: float
    alpha: float

    def summary(self) -> dict[str, float]:
        """The scalar fields as a flat dict."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if f.name != "terms"
        }


def coefficient_recovery(
    human_table: pd.DataFrame,
    sim_tables: Sequence[pd.DataFrame],
    *,
    alpha: float = 0.05,
    exclude: Sequence[str] = (),
) -> Recovery:
    """Compare a human coefficient table with one table per synthetic replicate sample.

    Tables are tidy (``term, estimate, std_error, statistic, p_value, ci_low,
    ci_high``). A replicate that lacks a term, or has a NaN estimate for it, *failed*
    to estimate it. A term's class is "positive"/"negative" (sign of the estimate) if
    ``p_value < alpha``, else "null"; a failed replicate's class is "null". Terms of
    the replicates that the human table lacks are ignored.

    ``terms`` columns, one row per human term in human order:

    * ``human_*``: the human estimate, std_error, p_value, ci_low, ci_high and class;
    * ``sim_estimate, sim_std_error, sim_ci_low, sim_ci_high``: means over the
      ``n_reps`` replicates that estimated the term (``n_failed`` did not);
      ``sim_class``: the most frequent class over all replicates, "null" on a tie;
    * ``bias`` = sim_estimate - human_estimate; ``std_diff`` = bias / human_std_error
      (the standardised difference); ``se_ratio`` = sim_std_error / human_std_error;
    * ``sign_agree``, ``sig_agree``, ``coverage``: shares of all replicates whose
      estimate has the human sign, whose class equals the human class, whose CI
      contains the human estimate (a failed replicate disagrees / is not covering);
    * ``ci_overlap``: mean over estimating replicates of the Karr et al. (2006)
      overlap J = ½[O/(U_h - L_h) + O/(U_s - L_s)], O = min(U_h, U_s) - max(L_h, L_s);
      1 for identical intervals, negative for disjoint ones.

    A human row with a NaN estimate keeps its row with the comparison columns
    (bias ... coverage) and ``human_class`` missing, and is left out of the scalars;
    so are the terms named in ``exclude`` (e.g. the intercept, which is rarely a
    finding of the study), though they keep their rows. The scalars:

    * ``sign_f1``: micro-averaged F1 over the classes "positive" and "negative",
      pooled over (term, replicate) pairs, i.e. 2·TP / (#sim non-null + #human
      non-null) with TP the pairs whose non-null sim class equals the human class
      (sklearn's ``f1_score(labels=["positive", "negative"], average="micro")``);
      nan when both counts are 0;
    * ``false_positive_rate``: share of pairs with human class "null" whose sim class
      is not "null" (nan if there is none);
    * ``coverage``: mean of the per-term coverage.
    """
    if not 0 < alpha < 1:
        raise OptionError(
            f"alpha={alpha!r} is not allowed; it must lie strictly between 0 and 1"
        )
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

    est, se, p, low, high = _replicate_grid(human["term"], tables)
    failed = np.isnan(est)
    se, low, high = (np.where(failed, np.nan, x) for x in (se, low, high))
    h_est, h_se, h_p, h_low, h_high = (human[c].to_numpy()[:, None] for c in _NUMERIC)
    h_class = _classes(h_est, h_p, alpha)
    s_class = _classes(est, p, alpha)

    with np.errstate(invalid="ignore", divide="ignore"):
        overlap = np.minimum(h_high, high) - np.maximum(h_low, low)
        karr = (overlap / (h_high - h_low) + overlap / (high - low)) / 2
        sim_estimate, sim_se = _row_mean(est), _row_mean(se)
        bias = sim_estimate - h_est[:, 0]
        terms = pd.DataFrame(
            {
                "term": human["term"].to_numpy(),
                **{f"human_{c}": human[c].to_numpy() for c in _NUMERIC},
                "human_class": _CLASS_LABELS[h_class[:, 0] + 1],
                "sim_estimate": sim_estimate,
                "sim_std_error": sim_se,
                "sim_ci_low": _row_mean(low),
                "sim_ci_high": _row_mean(high),
                "sim_class": _CLASS_LABELS[_modal_class(s_class) + 1],
                "bias": bias,
                "std_diff": bias / h_se[:, 0],
                "se_ratio": sim_se / h_se[:, 0],
                "sign_agree": (np.sign(est) == np.sign(h_est)).mean(axis=1),
                "sig_agree": (s_class == h_class).mean(axis=1),
                "ci_overlap": _row_mean(karr),
                "coverage": ((low <= h_est) & (h_est <= high)).mean(axis=1),
                "n_reps": (~failed).sum(axis=1),
                "n_failed": failed.sum(axis=1),
            },
            columns=list(_TERM_COLUMNS),
        )
    defined = ~np.isnan(h_est[:, 0])
    terms.loc[~defined, ["human_class", *_COMPARISONS]] = np.nan

    scored = defined & ~terms["term"].isin(exclude).to_numpy()
    h_class, s_class = np.broadcast_arrays(h_class[scored], s_class[scored])
    true_positives = np.sum((s_class != 0) & (s_class == h_class))
    denominator = np.sum(s_class != 0) + np.sum(h_class != 0)
    null_pairs = h_class == 0
    return Recovery(
        terms=terms,
        sign_f1=float(2 * true_positives / denominator)
        if denominator
        else float("nan"),
        false_positive_rate=(
            float(np.mean(s_class[null_pairs] != 0))
            if null_pairs.any()
            else float("nan")
        ),
        coverage=float(terms["coverage"][scored].mean())
        if scored.any()
        else float("nan"),
        alpha=alpha,
    )


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

    A cell is NaN where the replicate has no row for the term.
    """
    stacked = _coefficients(pd.concat(tables, ignore_index=True), "sim_tables")
    replicate = np.repeat(np.arange(len(tables)), [len(t) for t in tables])
    duplicated = pd.DataFrame({"rep": replicate, "term": stacked["term"]}).duplicated()
    if duplicated.any():
        first = duplicated.to_numpy().argmax()
        term = stacked["term"][first]
        raise DataError(f"sim_tables[{replicate[first]}] has duplicate term {term!r}")
    row = pd.Index(terms).get_indexer(stacked["term"])
    kept = row >= 0
    grids = []
    for column in _NUMERIC:
        grid = np.full((len(terms), len(tables)), np.nan)
        grid[row[kept], replicate[kept]] = stacked[column].to_numpy()[kept]
        grids.append(grid)
    return grids


def _classes(estimate: np.ndarray, p_value: np.ndarray, alpha: float) -> np.ndarray:
    """Class codes: +1 positive, -1 negative, 0 null (not significant, no estimate)."""
    significant = (p_value < alpha) & ~np.isnan(estimate)
    return np.where(significant, np.sign(estimate), 0).astype(int)


def _modal_class(classes: np.ndarray) -> np.ndarray:
    """Per row, the most frequent class code; 0 (null) when the top count is shared."""
    counts = np.stack([(classes == c).sum(axis=1) for c in (-1, 0, 1)], axis=1)
    tied = (counts == counts.max(axis=1, keepdims=True)).sum(axis=1) > 1
    return np.where(tied, 0, counts.argmax(axis=1) - 1)


def _row_mean(x: np.ndarray) -> np.ndarray:
    """Mean of each row over its non-NaN cells; NaN for a row with none."""
    with np.errstate(invalid="ignore"):
        return np.nansum(x, axis=1) / np.sum(~np.isnan(x), axis=1)
