"""Regression fits with R-compatible standard errors: ``fit(formula, data) -> Fit``.

formulaic builds the design matrix from a Wilkinson formula, statsmodels estimates (array API),
and linearmodels absorbs fixed effects. Standard errors equal R's ``sandwich::vcovHC`` /
``vcovCL`` on the matching ``lm`` or ``glm`` (checked against committed R output in
``tests/reference``).

Inference conventions:

- ``family="ols"``: t distribution with the residual degrees of freedom (R ``lm`` +
  ``lmtest::coeftest``); with absorbed fixed effects the residual df also counts the absorbed
  dummies, as in ``lm(y ~ x + factor(fe))``.
- ``family="ols"`` with ``cov="cluster:<column>"``: t distribution with G - 1 df (G clusters).
- ``logit``, ``probit``, ``poisson``: normal distribution (as ``coeftest`` on a ``glm``).
- ``ci_low``, ``ci_high`` = estimate -/+ quantile(1 - alpha / 2) * std_error.

Covariances: ``nonrobust`` is the model-based one; ``HC0``..``HC3`` equal
``sandwich::vcovHC(model, type=...)`` (for glm: scores and hat values of the working weights);
``cluster:g`` equals ``sandwich::vcovCL(model, cluster = ~g, type = "HC1")``, i.e. the
adjustment G / (G - 1) * (n - 1) / (n - k).

Like R, a column that is (numerically) a linear combination of the columns before it, or is
all zero, is aliased: its row stays in the table with NaN and its name is listed in
``Fit.aliased``. The rule is lm's (QR, tolerance 1e-7 on the unweighted design) for every
family; R's glm applies its tolerance to the weighted design, which differs only for columns
that are nearly, not exactly, collinear.

Categorical outcomes: ``mnlogit`` is nnet::multinom (the first level is the reference; a
coefficient is named ``"<term> | <outcome>=<level>"``), ``ologit`` / ``oprobit`` are
MASS::polr (P(y <= k) = F(threshold_k - x'b), no intercept, thresholds named
``"threshold a|b"``); ``nonrobust`` is the inverse observed information (R's vcov) and
HC0 / HC1 the sandwich of the per-respondent scores (HC1 times n / (n - k)).

What each family is (its estimator, outcome, link, covariances) is its entry in
``simval.families.REGISTRY``; this module holds the estimators and reads the entry.

logit, probit and poisson fail with EstimationError under perfect or quasi-perfect separation
(fitted values numerically at 0 or 1, or, for poisson, at 0, R's thresholds) or when IRLS does
not converge, where R's glm would only warn.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
import statsmodels.api as sm
from formulaic import Formula, ModelMatrices, ModelSpecs, model_matrix
from formulaic.errors import DataMismatchWarning, FormulaicError
from linearmodels.iv.absorbing import AbsorbingLS
from statsmodels.stats import sandwich_covariance
from statsmodels.tools.sm_exceptions import (
    PerfectSeparationError,
    PerfectSeparationWarning,
)

from simval.errors import (
    DataError,
    EstimationError,
    FormulaError,
    OptionError,
    check_alpha,
    plain,
    refuse,
)
from simval.families import (
    CLUSTER_PREFIX,
    CLUSTERED,
    REGISTRY,
    Estimator,
    Family,
    ModelFamily,
    check_cov,
    family_of,
)
from simval.formulas import formula_variables
from simval.metrics import COEF_COLUMNS
from simval.study import check_weights

ABSORB_COVS = ("nonrobust", "HC0", "HC1")

# R's lm: a column is aliased when under RANK_TOL times its norm is left after QR.
RANK_TOL = 1e-7
# R's glm: fitted probabilities "numerically 0 or 1".
BOUNDARY_EPS = 10 * np.finfo(float).eps
GLM_MAXITER = 100
# IRLS stops when the coefficients stop moving (not the deviance): Fisher scoring for probit
# converges only linearly, and a deviance rule leaves it about 1e-8 short of the MLE.
GLM_TOLERANCE = {"tol_criterion": "params", "tol": 1e-10, "rtol": 1e-8}


@dataclass(frozen=True, eq=False)
class Fit:
    """One fitted model: the settings, the rows used and a tidy coefficient table.

    ``table`` has the columns ``metrics.COEF_COLUMNS`` (``term, estimate, std_error,
    statistic, p_value, ci_low, ci_high``; one row per design column, in formulaic's order and naming); aliased terms keep
    their row with NaN and are listed in ``aliased``. ``vcov`` is the covariance of the
    estimates (terms x terms, NaN rows and columns for aliased terms), the one the standard
    errors come from, so joint (Wald) tests can use it. ``design_sd`` is each design
    column's standard deviation in the rows used and ``outcome_sd`` the outcome's: the
    scales that turn a standardised margin into one on a coefficient's own scale.
    ``clusters`` counts the clusters of a ``cluster:`` covariance (None otherwise).
    ``weights``: the survey-weight column the fit used (None: unweighted).
    ``levels``: the outcome's levels in order for the categorical families (mnlogit,
    ologit, oprobit; the first is mnlogit's reference), None for the others.
    ``input_scale``: each term's input unit after Gelman (2008), the size of a
    "one-unit" change that a standardised margin refers to: 1 for a 0/1 column (a
    dummy, or an interaction of dummies, whatever its prevalence), 2 SD for a
    continuous input, the product over an interaction's inputs; 0 for a constant
    column and for thresholds. ``satterthwaite_df``: each coefficient's Satterthwaite
    degrees of freedom of its sandwich variance (``satterthwaite_df``; with
    ``cov="nonrobust"`` OLS's residual df, infinite for the other families), infinite
    for the categorical families and NaN where aliased: how much to trust the
    variance in a small sample. ``wald_df``: the same for the covariance of every
    estimated non-constant term at once (``satterthwaite_df(joint=True)``), the df of
    a joint Wald test of them. ``refit`` leaves both NaN for sandwich covariances
    (replicates are tested against the original fit's).
    """

    formula: str
    family: str
    cov: str
    absorb: str | None
    weights: str | None
    alpha: float
    nobs: int
    table: pd.DataFrame
    aliased: tuple[str, ...]
    vcov: pd.DataFrame
    design_sd: pd.Series
    outcome_sd: float
    clusters: int | None
    levels: tuple[Any, ...] | None
    input_scale: pd.Series
    # derived from the original fit's design; a refit equals it without them
    satterthwaite_df: pd.Series = field(compare=False)
    wald_df: float = field(compare=False)
    _spec: ModelSpecs = field(repr=False, compare=False)

    def refit(self, data: pd.DataFrame) -> Fit:
        """Fit the same model to new data with the original design (factor levels, columns).

        A level absent from ``data`` gives an all-zero column, which is aliased; a level the
        original fit never saw is a DataError. When a factor's reference level is absent,
        the other levels' columns would silently measure contrasts against another level
        under the same names: every term of that factor is marked aliased (NaN) instead.
        Cheap: the formula is not parsed again.
        """
        rows = self._complete(data)
        return self._estimate_on(rows, self._design(rows))

    def refit_many(
        self, samples: Sequence[pd.DataFrame]
    ) -> list[Fit | EstimationError | DataError]:
        """``refit`` on each sample, a sample's EstimationError or DataError in its place.

        formulaic's cost is per call far more than per row, so where the design is built
        row by row (plain columns and ``C(column)`` factors, ``_row_wise``) the samples
        are stacked, materialised once and sliced apart: each gets the very design its own
        materialisation would. Otherwise, or when the samples' column types differ or a
        sample holds a level the original fit never saw, each sample is refitted alone.
        """
        if not _row_wise(self._spec):
            return [_attempt(self.refit, sample) for sample in samples]
        rows = [_attempt(self._complete, sample) for sample in samples]
        frames = [r for r in rows if isinstance(r, pd.DataFrame)]
        if len({tuple(frame.dtypes) for frame in frames}) > 1:
            return [_attempt(self.refit, sample) for sample in samples]
        if not frames:
            return rows
        try:
            stacked = self._design(pd.concat(frames, ignore_index=True))
        except DataError:
            return [_attempt(self.refit, sample) for sample in samples]
        pieces = iter(stacked.split([len(frame) for frame in frames]))
        return [
            _attempt(self._estimate_on, r, next(pieces))
            if isinstance(r, pd.DataFrame)
            else r
            for r in rows
        ]

    def arrays(self, data: pd.DataFrame) -> tuple[pd.Index, np.ndarray, np.ndarray]:
        """The index labels of the rows of ``data`` this model uses, and its design
        matrix and outcome on them, built with the original design (factor levels,
        columns in ``table``'s order): how another estimator (``simval.rectify``) fits
        this very model. Aliased columns are kept; an unseen level is a DataError."""
        rows = self._complete(data)
        used = data[
            _model_columns(
                self._spec.required_variables,
                cluster=_cluster_column(self.cov),
                absorb=self.absorb,
                weights=self.weights,
            )
        ]
        kept = data.index[~used.isna().to_numpy().any(axis=1)]
        design = self._design(rows)
        if design.y is None:
            raise DataError(
                f"outcome {design.outcome!r} of {self.formula!r} is not numeric"
            )
        return kept[design.positions], design.X, design.y

    def _complete(self, data: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``data`` this model can use (see ``_complete_rows``)."""
        _check_frame(data)
        return _complete_rows(
            data,
            formula=self.formula,
            variables=self._spec.required_variables,
            cluster=_cluster_column(self.cov),
            absorb=self.absorb,
            weights=self.weights,
        )

    def _design(self, rows: pd.DataFrame) -> _Design:
        """The original design materialised on ``rows``; unseen levels are a DataError."""
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataMismatchWarning)
            try:
                matrices = _materialize(
                    self.formula, lambda: self._spec.get_model_matrix(rows)
                )
            except DataMismatchWarning as exc:
                factors = ", ".join(_categorical_factors(self._spec))
                raise DataError(
                    f"refit of {self.formula!r}: the data has levels the original fit did not "
                    f"see (factors: {factors}): {str(exc).split('. They')[0]}"
                ) from None
        return _Design.of(matrices)

    def _estimate_on(self, rows: pd.DataFrame, design: _Design) -> Fit:
        """This model's settings estimated on ``rows`` with its ``design``."""
        return _estimate(
            design,
            rows,
            formula=self.formula,
            family=self.family,
            cov=self.cov,
            absorb=self.absorb,
            weights=self.weights,
            alpha=self.alpha,
            unidentified=_unreferenced_terms(self._spec, design.terms, rows),
            levels=self.levels,
            variance_df=False,
        )

    def __eq__(self, other: object) -> bool:
        """Equal when every compared field is; tables compare with NaN equal to NaN."""
        if not isinstance(other, Fit):
            return NotImplemented
        return all(
            _same(getattr(self, f.name), getattr(other, f.name))
            for f in fields(self)
            if f.compare
        )


def fit(
    formula: str,
    data: pd.DataFrame,
    *,
    family: Family = "ols",
    cov: str = "HC1",
    absorb: str | None = None,
    weights: str | None = None,
    alpha: float = 0.05,
) -> Fit:
    """Fit ``formula`` to ``data`` and return a tidy coefficient table with R-compatible errors.

    ``family``: "ols" (linear), "logit", "probit" (0/1 or bool outcome), "poisson" (counts),
    "mnlogit" (unordered levels), "ologit", "oprobit" (ordered levels; see the module
    docstring).
    ``cov``: "nonrobust", "HC0", "HC1", "HC2", "HC3" or "cluster:<column>" (the
    categorical families: "nonrobust", "HC0" or "HC1").
    ``absorb``: a column whose fixed effects are absorbed (OLS only; cov nonrobust, HC0, HC1 or
    cluster); the table then holds only the other terms, with the slopes and errors of
    ``lm(y ~ x + factor(fe))``. Rows with a missing value in any variable the model uses (or
    in the cluster / absorb / weights column) are dropped, like R's na.omit. ``weights``: a
    column of survey (sampling) weights, positive numbers: the estimates and sandwich errors
    of R's ``lm`` / ``glm`` with ``weights=`` (ols: every cov; logit, probit, poisson:
    HC0, HC1 or cluster; ``survey::svyglm`` on independent units equals HC0 times
    n / (n - 1)). ``alpha``: the intervals are at level 1 - alpha. See the module
    docstring for the inference conventions.
    """
    _check_options(family=family, cov=cov, absorb=absorb, weights=weights, alpha=alpha)
    _check_frame(data)
    parsed = _parse(formula)
    rows = _complete_rows(
        data,
        formula=formula,
        variables=_variables(parsed, formula=formula, data=data),
        cluster=_cluster_column(cov),
        absorb=absorb,
        weights=weights,
    )
    matrices = _materialize(
        formula, lambda: model_matrix(parsed, rows, context={}, na_action="drop")
    )
    return _estimate(
        _Design.of(matrices),
        rows,
        formula=formula,
        family=family,
        cov=cov,
        absorb=absorb,
        weights=weights,
        alpha=alpha,
    )


# ---- checks on the arguments and the data -------------------------------------------------


def _check_options(
    *, family: str, cov: str, absorb: str | None, weights: str | None, alpha: float
) -> None:
    """Raise OptionError for a family, cov, absorb, weights or alpha outside what the
    family takes (``ModelFamily``)."""
    spec = family_of(family)
    check_cov(cov)
    if weights is not None:
        _check_weighting(spec, cov=cov, absorb=absorb, weights=weights)
    if not spec.takes(cov):
        raise OptionError(
            f"cov={cov!r} is not available for family={family!r}; choose one of "
            f"{', '.join(map(repr, spec.covs))} (no HC2/HC3 or cluster sandwich for "
            "categorical outcomes)"
        )
    check_alpha(alpha)
    if absorb is None:
        return
    if not isinstance(absorb, str):
        raise refuse("absorb", absorb, "a column name or None")
    if not spec.absorbs:
        needs = " or ".join(
            f"family={f.name!r}" for f in REGISTRY.values() if f.absorbs
        )
        raise OptionError(f"absorb={absorb!r} needs {needs}, not family={family!r}")
    if cov in ("HC2", "HC3"):
        choices = ", ".join(repr(c) for c in (*ABSORB_COVS, CLUSTERED))
        raise OptionError(
            f"cov={cov!r} cannot be combined with absorb={absorb!r} (its hat values need the "
            f"absorbed dummies); choose one of {choices}"
        )


def _check_weighting(
    family: ModelFamily, *, cov: str, absorb: str | None, weights: str
) -> None:
    """Raise OptionError for a weighted fit simval does not match to R."""
    if not isinstance(weights, str):
        raise refuse("weights", weights, "a column name or None")
    if not family.weighted_covs or absorb is not None:
        what = f"family={family.name!r}" if absorb is None else f"absorb={absorb!r}"
        weighted = [f.name for f in REGISTRY.values() if f.weighted_covs]
        raise OptionError(
            f"weights={weights!r} cannot be combined with {what}: weighted fits are "
            f"{_listed(weighted, last='and')} without absorbed effects"
        )
    if not family.takes(cov, weighted=True):
        raise OptionError(
            f"weights={weights!r} with family={family.name!r} needs cov "
            f"{_listed(map(repr, family.weighted_covs), last='or')} (survey weights need "
            f"a sandwich), not {cov!r}"
        )


def _listed(names: Iterable[str], *, last: str) -> str:
    """``a, b and c`` (``last="and"``) or ``a, b or c``."""
    names = list(names)
    return (
        ", ".join(names[:-1]) + f" {last} " + names[-1] if len(names) > 1 else names[0]
    )


def _check_frame(data: object) -> None:
    """Raise DataError unless ``data`` is a pandas DataFrame."""
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")


def _cluster_column(cov: str) -> str | None:
    """The column named by cov='cluster:<column>', else None."""
    return cov.removeprefix(CLUSTER_PREFIX) if cov.startswith(CLUSTER_PREFIX) else None


def _parse(formula: str) -> Formula:
    """Parse a one-outcome formula, raising FormulaError when formulaic cannot."""
    try:
        parsed = Formula(formula)
    except FormulaicError as exc:
        raise FormulaError(
            f"cannot parse formula {formula!r}: {_first_line(exc)}"
        ) from None
    if not hasattr(parsed, "lhs"):
        raise FormulaError(
            f"formula {formula!r} has no outcome; write it as 'y ~ {formula}'"
        )
    if len(parsed.lhs) != 1:
        raise FormulaError(
            f"formula {formula!r} must have exactly one outcome left of '~'"
        )
    return parsed


def _variables(parsed: Formula, *, formula: str, data: pd.DataFrame) -> set[str]:
    """The data columns ``formula`` uses, read by the parser Study shares (simval.formulas).

    That parser also sees the arguments of stateful transforms (``center(x)``,
    ``poly(x, 2)``), which formulaic 1.2's ``required_variables`` leaves out before the
    first materialization; afterwards the model spec knows them, so ``refit`` asks it.
    ``parsed`` and ``data`` are not needed; they stay so that callers need not change.
    """
    return formula_variables(formula)


def _complete_rows(
    data: pd.DataFrame,
    *,
    formula: str,
    variables: set[str],
    cluster: str | None,
    absorb: str | None,
    weights: str | None = None,
) -> pd.DataFrame:
    """The columns the model uses, restricted to rows without a missing value (R's na.omit)."""
    _check_columns(data, formula=formula, variables=variables)
    for role, column in (
        ("cluster", cluster),
        ("absorb", absorb),
        ("weights", weights),
    ):
        if column is not None and column not in data.columns:
            raise DataError(f"{role} column {column!r} is not in the data")
    if data.empty:
        raise DataError(f"data for {formula!r} has no rows")
    if weights is not None:
        check_weights(data[weights], column=weights, what="the data")
    used = data[
        _model_columns(variables, cluster=cluster, absorb=absorb, weights=weights)
    ]
    missing = used.isna()
    incomplete = missing.to_numpy().any(axis=1)
    # infer_objects: an object column of bools with missing values becomes bool once they go
    kept = used[~incomplete] if incomplete.any() else used  # selecting all rows costs
    rows = kept.reset_index(drop=True).infer_objects()
    if rows.empty:
        counts = missing.sum()
        named = ", ".join(f"{c!r} ({n} missing)" for c, n in counts[counts > 0].items())
        raise DataError(
            f"no rows left for {formula!r} after dropping missing values; columns with missing "
            f"values: {named}"
        )
    return rows


def _model_columns(
    variables: set[str],
    *,
    cluster: str | None,
    absorb: str | None,
    weights: str | None = None,
) -> list[str]:
    """The columns a model reads: its variables, then its cluster, absorb and weights
    columns."""
    extra = filter(None, (cluster, absorb, weights))
    return list(dict.fromkeys([*sorted(variables), *extra]))


def _check_columns(data: pd.DataFrame, *, formula: str, variables: set[str]) -> None:
    """Raise FormulaError naming the first variable of the formula that data lacks."""
    for name in sorted(variables - set(data.columns)):
        if re.search(rf"\b{re.escape(name)}\s*\(", formula):
            raise FormulaError(
                f"formula {formula!r} calls {name!r}, which is neither a column of the data nor "
                "a formulaic transform (np.*, log, exp, center, scale, C, I, poly, ...)"
            )
        raise FormulaError(
            f"formula {formula!r} names column {name!r}, which is not in the data"
        )


def _materialize(formula: str, build: Callable[[], ModelMatrices]) -> ModelMatrices:
    """Run formulaic's ``build()``, turning its evaluation errors into FormulaError."""
    try:
        return build()
    except FormulaicError as exc:
        raise FormulaError(
            f"cannot evaluate formula {formula!r}: {_first_line(exc)}"
        ) from None


def _categorical_factors(spec: ModelSpecs) -> list[str]:
    """Names of the categorical factors (a text outcome's first), for error messages."""
    return [
        name
        for side in (spec.lhs, spec.rhs)
        for name, (kind, _) in side.encoder_state.items()
        if kind.value == "categorical"
    ]


@dataclass(frozen=True)
class _Design:
    """A materialised design as arrays: the outcome (None when formulaic encoded it as a
    factor), the design columns, and the positions of the rows it kept in the data."""

    y: np.ndarray | None
    outcome: str
    X: np.ndarray
    terms: list[str]
    positions: np.ndarray
    spec: ModelSpecs

    @classmethod
    def of(cls, matrices: ModelMatrices) -> _Design:
        """The arrays of formulaic's model matrices."""
        lhs, rhs = matrices.lhs, matrices.rhs
        factor = any(
            kind.value == "categorical"
            for kind, _ in lhs.model_spec.encoder_state.values()
        )
        return cls(
            y=None if factor else lhs.to_numpy(dtype=float)[:, 0],
            outcome=str(lhs.model_spec.formula),
            X=rhs.to_numpy(dtype=float),
            terms=list(rhs.columns),
            positions=rhs.index.to_numpy(),
            spec=matrices.model_spec,
        )

    def split(self, sizes: Sequence[int]) -> list[_Design]:
        """The designs of consecutive blocks of ``sizes`` rows of the data (stacked samples)."""
        starts = np.cumsum([0, *sizes])
        # the memory layout a sample's own materialisation gives (BLAS sums in its order)
        layout = "F" if self.X.flags.f_contiguous else "C"
        pieces = []
        for low, high in itertools.pairwise(starts):
            kept = (self.positions >= low) & (self.positions < high)
            pieces.append(
                _Design(
                    y=None if self.y is None else self.y[kept],
                    outcome=self.outcome,
                    X=np.require(self.X[kept], requirements=layout),
                    terms=self.terms,
                    positions=self.positions[kept] - low,
                    spec=self.spec,
                )
            )
        return pieces


def _row_wise(spec: ModelSpecs) -> bool:
    """Whether each design row depends on its data row alone: every factor a literal, a
    column or ``C(column)`` (encoded on the stored levels), so stacked samples can share
    one materialisation. Transforms such as ``center(x)`` or ``I(x - x.mean())`` may not."""
    factors = [
        f for part in (spec.lhs, spec.rhs) for t in part.formula for f in t.factors
    ]
    return all(
        f.eval_method.value in ("literal", "lookup")
        or re.fullmatch(r"C\(\s*`?[A-Za-z_][\w.]*`?\s*\)", f.expr)
        for f in factors
    )


def _attempt(step: Callable[..., Any], *args: Any) -> Any | EstimationError | DataError:
    """``step(*args)``, or the EstimationError or DataError it raised."""
    try:
        return step(*args)
    except (EstimationError, DataError) as exc:
        return exc


def _outcome(design: _Design, *, family: ModelFamily) -> tuple[np.ndarray, str]:
    """The outcome vector and its name, after checking it suits ``family``."""
    y, name = design.y, design.outcome
    if y is None:
        raise DataError(
            f"outcome {name!r} is not numeric; code it as numbers (0/1 for {family.name})"
        )
    family.check_outcome(y, name=name)
    if not np.isfinite(y).all():
        raise DataError(f"outcome {name!r} has infinite values")
    if np.ptp(y) == 0:
        raise EstimationError(
            f"outcome {name!r} is constant ({y[0]:g} in every used row)"
        )
    return y, name


def _check_finite(X: np.ndarray, terms: list[str]) -> None:
    """Raise DataError naming the terms with infinite values (e.g. log of zero)."""
    bad = [
        term for term, finite in zip(terms, np.isfinite(X).all(axis=0)) if not finite
    ]
    if bad:
        raise DataError(f"terms {', '.join(map(repr, bad))} have infinite values")


def _estimable(X: np.ndarray, *, norms: np.ndarray) -> np.ndarray:
    """Mask of the columns that are not (numerically) combinations of the kept columns before.

    Mirrors R's lm (LINPACK dqrdc2 with tol 1e-7): walking left to right, a column is aliased
    when the part of it orthogonal to the kept columns before it is under ``RANK_TOL`` times its
    norm in ``norms``; all-zero columns are aliased. Later columns go first, as in R.
    """
    keep = norms > 0
    if not keep.any():
        return keep
    r = np.linalg.qr(X[:, keep], mode="r")
    columns = np.flatnonzero(keep)
    while True:
        kept = np.flatnonzero(keep[columns])
        diag = np.abs(np.diag(np.linalg.qr(r[:, kept], mode="r")))
        weak = np.flatnonzero(diag < RANK_TOL * norms[columns[kept[: diag.size]]])
        if not weak.size:
            # more columns than rows: the rest lie in the span of the kept ones
            keep[columns[kept[diag.size :]]] = False
            return keep
        keep[columns[kept[weak[0]]]] = False


@dataclass(frozen=True)
class _Sample:
    """What an estimator fits: the outcome (level codes for a categorical family), the
    estimable design columns and their names, the family and covariance, and the
    cluster codes, absorbed-effect codes and survey weights of the rows (or None)."""

    y: np.ndarray
    X: np.ndarray
    terms: list[str]
    outcome: str
    levels: tuple[Any, ...] | None
    family: ModelFamily
    cov: str
    clusters: np.ndarray | None
    effects: np.ndarray | None
    weights: np.ndarray | None


@dataclass(frozen=True)
class _Estimates:
    """An estimator's answer: the estimates and their covariance; ``df``, the t
    distribution's degrees of freedom (None: normal inference); ``working``, each row's
    weight in the working model, its share of the information (None: not used)."""

    params: np.ndarray
    vcov: np.ndarray
    df: int | None = None
    working: np.ndarray | None = None


def _estimate(
    design: _Design,
    rows: pd.DataFrame,
    *,
    formula: str,
    family: str,
    cov: str,
    absorb: str | None,
    alpha: float,
    weights: str | None = None,
    unidentified: frozenset[str] = frozenset(),
    levels: tuple[Any, ...] | None = None,
    variance_df: bool = True,
) -> Fit:
    """Check the design, drop aliased columns, estimate and tabulate (shared by fit and refit).

    ``unidentified`` names columns that must not be estimated (refit: factors whose
    reference level is absent); they are aliased like collinear columns. ``levels``:
    a categorical family's outcome levels (refit: the original fit's), else found here.
    ``variance_df``: compute the sandwich's Satterthwaite dfs (a refit skips them:
    replicates are compared against the original fit, whose dfs the small-sample
    tests read, and they cost up to as much as the fit itself under clustering).
    """
    spec = REGISTRY[family]
    if spec.categorical:
        y, outcome, levels = _categorical_outcome(
            design, rows, family=spec, levels=levels
        )
    else:
        y, outcome = _outcome(design, family=spec)
    # the absorbed effects span the intercept, an ordered model's thresholds replace it
    intercept = absorb is None and not spec.ordered
    columns = [intercept or t != "Intercept" for t in design.terms]
    terms = [t for t, kept in zip(design.terms, columns) if kept]
    X = design.X if all(columns) else design.X[:, columns]
    _check_finite(X, terms)
    used = (
        rows.iloc[design.positions]
        if cov.startswith(CLUSTER_PREFIX) or absorb or weights
        else rows
    )
    w = None if weights is None else used[weights].to_numpy(dtype=float)
    clusters = _groups(used, _cluster_column(cov))
    effects = _groups(used, absorb)
    n_absorbed = 0 if effects is None else effects.max() + 1
    norms = np.linalg.norm(X, axis=0)
    norms = np.where(np.isin(terms, list(unidentified)), 0.0, norms)
    keep = _estimable(X if effects is None else _demean(X, effects), norms=norms)
    if len(y) <= keep.sum() + n_absorbed:
        raise EstimationError(
            f"no residual degrees of freedom for {formula!r}: {len(y)} rows for "
            f"{keep.sum() + n_absorbed} estimable coefficients"
        )
    if clusters is not None and clusters.max() < 1:
        raise EstimationError(f"cov={cov!r} needs at least 2 clusters; the data has 1")
    sample = _Sample(
        y=y, X=X[:, keep], terms=[t for t, k in zip(terms, keep) if k],
        outcome=outcome, levels=levels, family=spec, cov=cov, clusters=clusters,
        effects=effects, weights=w,
    )  # fmt: skip
    fitted = (
        _ESTIMATORS[spec.estimator](sample)
        if keep.any()
        else _Estimates(params=np.empty(0), vcov=np.empty((0, 0)))
    )
    params, vcov, df = fitted.params, fitted.vcov, fitted.df
    design_sd = _sd(X, weights=w)
    scale = input_scale(terms, X, design_sd=design_sd)
    if spec.categorical:
        terms, keep, design_sd, scale = _categorical_terms(
            terms, keep, design_sd, scale, family=spec, outcome=outcome,
            levels=levels, y=y,
        )  # fmt: skip
        dof, joint = np.full(len(terms), np.inf), np.inf
    else:
        dof, joint = _variance_df(
            sample, fitted, keep=keep, scale=scale, wanted=variance_df
        )
    full = np.full((len(terms), len(terms)), np.nan)
    full[np.ix_(keep, keep)] = vcov
    return Fit(
        formula=formula,
        family=family,
        cov=cov,
        absorb=absorb,
        weights=weights,
        alpha=alpha,
        nobs=len(y),
        table=_table(terms, keep, params, vcov, df=df, alpha=alpha),
        aliased=tuple(t for t, k in zip(terms, keep) if not k),
        vcov=pd.DataFrame(full, index=terms, columns=terms),
        design_sd=pd.Series(design_sd, index=terms),
        outcome_sd=float(_sd(y[:, None].astype(float), weights=w)[0]),
        clusters=None if clusters is None else int(clusters.max() + 1),
        levels=levels,
        input_scale=pd.Series(scale, index=terms),
        satterthwaite_df=pd.Series(np.where(keep, dof, np.nan), index=terms),
        wald_df=float(joint),
        _spec=design.spec,
    )


def _variance_df(
    sample: _Sample,
    fitted: _Estimates,
    *,
    keep: np.ndarray,
    scale: np.ndarray,
    wanted: bool,
) -> tuple[np.ndarray, float]:
    """Each design column's Satterthwaite df and the joint one of the non-constant
    terms (``Fit.satterthwaite_df``, ``Fit.wald_df``) for a one-equation family: the
    residual df (OLS) or infinity (a fixed scale) for a model-based variance, NaN where
    not ``wanted`` (a refit), else from the working model's scores."""
    if sample.cov == "nonrobust":
        # a model-based variance: OLS estimates sigma^2 on the residual df, the
        # binary and count families fix the scale
        df = np.inf if fitted.df is None else float(fitted.df)
        return np.full(len(keep), df), df
    dof = np.full(len(keep), np.nan)
    if not wanted:
        return dof, np.nan
    if not keep.any():
        return dof, np.inf
    working, w = fitted.working, sample.weights
    scores = standardised_scores(
        sample.X if sample.effects is None else _demean(sample.X, sample.effects),
        information=working, score=working * (1.0 if w is None else w),
    )  # fmt: skip
    dof[keep] = satterthwaite_df(scores, clusters=sample.clusters)
    joint = satterthwaite_df(
        scores[:, scale[keep] > 0], clusters=sample.clusters, joint=True
    )
    return dof, joint


def input_scale(
    terms: Sequence[str], X: np.ndarray, *, design_sd: np.ndarray
) -> np.ndarray:
    """Each design column's input unit (Gelman 2008, "Scaling regression inputs by
    dividing by two standard deviations"): 1 for a column of 0s and 1s, 2 SD for a
    continuous input, and for an interaction the product over its inputs (each looked
    up as a column of its own; a column whose inputs are not all columns counts as one
    continuous input); 0 for a constant column.

    A coefficient per unit then has one meaning for every kind of term: the outcome's
    change between the two values of a dummy, rare or common, and between values about
    one SD either side of a continuous input's mean, so one standardised margin is the
    same substantive size for all of them.
    """
    position = {term: j for j, term in enumerate(terms)}
    binary = ((X == 0) | (X == 1)).all(axis=0)
    scale = np.where(binary, 1.0, 2 * design_sd)
    for j, term in enumerate(terms):
        inputs = _interaction_inputs(term)
        if not binary[j] and len(inputs) > 1 and all(i in position for i in inputs):
            scale[j] = np.prod([scale[position[i]] for i in inputs])
    return np.where(design_sd > 0, scale, 0.0)


def _interaction_inputs(term: str) -> list[str]:
    """The inputs of a design column's name split at its top-level colons
    (``x:C(g)[T.a:b]`` -> ``x``, ``C(g)[T.a:b]``)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(term):
        depth += char in "([" and 1 or char in ")]" and -1 or 0
        if char == ":" and depth == 0:
            parts.append(term[start:i])
            start = i + 1
    return [*parts, term[start:]]


def standardised_scores(
    X: np.ndarray, *, information: np.ndarray, score: np.ndarray
) -> np.ndarray:
    """Each row's contribution to the sandwich under the working model, w_i =
    (X' diag(information) X)^-1 x_i sqrt(score_i): independent rows whose score has
    expected square ``score`` times x x', so the sandwich's expectation is sum w_i w_i'."""
    bread = np.linalg.pinv(X.T @ (X * information[:, None]))
    return (X @ bread) * np.sqrt(score)[:, None]


def satterthwaite_df(
    scores: np.ndarray, *, clusters: np.ndarray | None, joint: bool = False
) -> np.ndarray | float:
    """The Satterthwaite degrees of freedom of the sandwich built from ``scores``
    (``standardised_scores``; summed within ``clusters``), per coefficient or, with
    ``joint``, for all of them at once.

    Under the working model (Gaussian scores, independent between clusters) the
    sandwich is a sum over clusters g of s_g s_g', s_g normal with covariance S_g,
    sum S_g = Omega. Matching a Wishart's variance (Tipton & Pustejovsky 2015, after
    Zhang 2012) gives df = q(q + 1) / sum_g [tr(B_g)^2 + tr(B_g^2)], B_g = Omega^-1/2
    S_g Omega^-1/2; for one coefficient, (sum_g c_g)^2 / sum_g c_g^2 with c_g its share
    of the variance (Bell & McCaffrey 2002 without the hat-matrix terms). It is small
    where a few rows or clusters carry a coefficient (a rare dummy, few clusters) and
    about n where every row informs it; jointly it is larger than the smallest
    coefficient's, as one noisy variance is one of q(q + 1) / 2 that the test reads.
    """
    if not joint:
        contributions = scores**2
        if clusters is not None:
            contributions = (
                pd.DataFrame(contributions).groupby(clusters).sum().to_numpy()
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            return contributions.sum(axis=0) ** 2 / (contributions**2).sum(axis=0)
    q = scores.shape[1]
    if not q:
        return np.inf
    try:
        root = np.linalg.cholesky(scores.T @ scores)
    except np.linalg.LinAlgError:
        return np.nan
    z = np.linalg.solve(root, scores.T).T  # rows with sum z_i z_i' = I
    if clusters is None:
        spread = 2 * np.sum(np.sum(z**2, axis=1) ** 2)
    else:
        order = np.argsort(clusters, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(clusters[order]) != 0])
        spread = 0.0
        for block in np.split(z[order], starts[1:]):
            gram = block.T @ block
            spread += np.trace(gram) ** 2 + np.sum(gram**2)
    return float(q * (q + 1) / spread)


def _sd(X: np.ndarray, *, weights: np.ndarray | None) -> np.ndarray:
    """Each column's standard deviation, weighted by the survey weights where given."""
    if weights is None:
        return X.std(axis=0, ddof=1)
    mean = np.average(X, axis=0, weights=weights)
    variance = np.average((X - mean) ** 2, axis=0, weights=weights)
    return np.sqrt(variance * len(X) / (len(X) - 1))


def _unreferenced_terms(
    spec: ModelSpecs, columns: pd.Index, rows: pd.DataFrame
) -> frozenset[str]:
    """Design columns of categorical factors whose reference (first) level ``rows`` lacks.

    Without its reference level a factor's remaining dummies would be re-based on another
    level under the original names; those columns are returned so they are aliased.
    """
    missing = []
    for factor, (kind, state) in spec.rhs.encoder_state.items():
        levels = state.get("categories") if kind.value == "categorical" else None
        if not levels:
            continue
        variable = _factor_variable(factor, rows)
        if variable is not None and not rows[variable].isin(levels[:1]).any():
            missing.append(factor)
    return frozenset(
        column
        for column in columns
        if any(part.startswith(f"{f}[") for part in column.split(":") for f in missing)
    )


def _factor_variable(factor: str, rows: pd.DataFrame) -> str | None:
    """The data column a categorical factor (``g`` or ``C(g, ...)``) encodes, if plain."""
    match = re.fullmatch(r"(?:C\(\s*)?`?([A-Za-z_][\w.]*)`?(?:\s*[,)].*)?", factor)
    name = match.group(1) if match else None
    return name if name in rows.columns else None


def _groups(rows: pd.DataFrame, column: str | None) -> np.ndarray | None:
    """Integer codes 0..G-1 of ``column`` in the used rows, or None without a column."""
    return None if column is None else pd.factorize(rows[column])[0]


def _demean(X: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """X minus its group means: what is left of each column after the absorbed effects."""
    return X - pd.DataFrame(X).groupby(groups).transform("mean").to_numpy()


# ---- estimators: one per ModelFamily.estimator, a _Sample in, _Estimates out -------------


def _ols(sample: _Sample) -> _Estimates:
    """statsmodels OLS (WLS with survey weights); its HC0-HC3 and cluster
    (G/(G-1)*(n-1)/(n-k)) equal R's sandwich on ``lm`` (with ``weights=``). t inference
    on the residual df, or G - 1 with G clusters; every row weighs the same in the
    working model (its survey weight with weights). With absorbed effects:
    ``_absorbed_ols``."""
    if sample.effects is not None:
        return _absorbed_ols(sample)
    y, X, weights, clusters = sample.y, sample.X, sample.weights, sample.clusters
    model = sm.OLS(y, X) if weights is None else sm.WLS(y, X, weights=weights)
    if clusters is None:
        result = model.fit(cov_type=sample.cov)
    else:
        result = model.fit(cov_type="cluster", cov_kwds={"groups": clusters})
    return _Estimates(
        params=result.params,
        vcov=result.cov_params(),
        df=_t_df(result.df_resid, clusters=clusters),
        working=np.ones(len(y)) if weights is None else weights,
    )


def _t_df(df_resid: float, *, clusters: np.ndarray | None) -> int:
    """OLS's t degrees of freedom: the residual df, or G - 1 with G clusters."""
    return int(df_resid) if clusters is None else int(clusters.max())


def _absorbed_ols(sample: _Sample) -> _Estimates:
    """linearmodels AbsorbingLS; its df adjustments count the absorbed dummies, as lm does."""
    y, X, cov, clusters = sample.y, sample.X, sample.cov, sample.clusters
    options = {
        "nonrobust": {"cov_type": "unadjusted", "debiased": True},
        "HC0": {"cov_type": "robust", "debiased": False},
        "HC1": {"cov_type": "robust", "debiased": True},
    }
    if clusters is None:
        settings = options[cov]
    else:
        settings = {
            "cov_type": "clustered",
            "debiased": True,
            "clusters": pd.DataFrame({"cluster": clusters}),
        }
    absorbed = pd.DataFrame({"absorb": pd.Categorical(sample.effects)})
    result = AbsorbingLS(pd.Series(y), pd.DataFrame(X), absorb=absorbed).fit(**settings)
    return _Estimates(
        params=result.params.to_numpy(),
        vcov=result.cov.to_numpy(),
        df=_t_df(result.df_resid, clusters=clusters),
        working=np.ones(len(y)),
    )


_GLM_DISTRIBUTIONS = {"binary": sm.families.Binomial, "count": sm.families.Poisson}
"""The statsmodels family of a GLM's outcome (``ModelFamily.outcome``)."""
_LINKS = {
    "logit": sm.families.links.Logit,
    "probit": sm.families.links.Probit,
    "log": sm.families.links.Log,
}
"""The statsmodels link of ``ModelFamily.link``."""


def _glm(sample: _Sample) -> _Estimates:
    """statsmodels GLM (IRLS) with R's glm sandwich, and each row's working weight
    (the IRLS weight times the survey weight: its share of the information); survey
    weights are R's prior weights (statsmodels' ``var_weights``), in the estimating
    equations and the scores.

    statsmodels' own GLM HC1-HC3 differ from R (no n/(n-k), no glm hat values; observed
    Hessian for probit), so the covariance is built here from statsmodels' pieces: the bread
    is the inverse expected information at the estimate (R's ``bread.glm``), the scores are
    ``score_obs`` (R's ``estfun.glm``), hat values use the working weights (R's
    ``hatvalues.glm``), and the sandwich is statsmodels' ``cov_white_simple`` / ``cov_cluster``.
    """
    y, X, weights, clusters = sample.y, sample.X, sample.weights, sample.clusters
    family, outcome, terms, cov = (
        sample.family,
        sample.outcome,
        sample.terms,
        sample.cov,
    )
    distribution = _GLM_DISTRIBUTIONS[family.outcome](_LINKS[family.link]())
    model = sm.GLM(y, X, family=distribution, var_weights=weights)
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        try:
            result = model.fit(maxiter=GLM_MAXITER, **GLM_TOLERANCE)
        except PerfectSeparationError:
            raise _separation(
                y, X, family=family, outcome=outcome, terms=terms
            ) from None
        except (np.linalg.LinAlgError, ValueError) as exc:
            raise EstimationError(
                f"{family.name} model of {outcome!r} failed: {exc}"
            ) from None
        mu = result.fittedvalues
    binary = family.outcome == "binary"  # fitted values bounded by 1 as well as by 0
    boundary = (mu < BOUNDARY_EPS) | binary & (mu > 1 - BOUNDARY_EPS)
    separated = any(issubclass(w.category, PerfectSeparationWarning) for w in caught)
    if boundary.any() or separated:
        raise _separation(y, X, family=family, outcome=outcome, terms=terms)
    if not result.converged:
        if _separating_terms(y, X, family=family, terms=terms):
            raise _separation(y, X, family=family, outcome=outcome, terms=terms)
        raise EstimationError(
            f"{family.name} model of {outcome!r} did not converge in {GLM_MAXITER} "
            "iterations"
        )
    params = result.params
    working = model.family.weights(mu) * (1.0 if weights is None else weights)
    bread = np.linalg.inv(-model.hessian(params, scale=1.0, observed=False))
    if cov == "nonrobust":
        return _Estimates(params=params, vcov=bread, working=working)
    scores = model.score_obs(params, scale=1.0)
    if clusters is not None:
        vcov = sandwich_covariance.cov_cluster((scores, bread), clusters)
        return _Estimates(params=params, vcov=vcov, working=working)
    if cov in ("HC2", "HC3"):
        leverage = 1 - result.get_hat_matrix_diag(observed=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = scores / (np.sqrt(leverage) if cov == "HC2" else leverage)[:, None]
    vcov = sandwich_covariance.cov_white_simple(
        (scores, bread), use_correction=cov == "HC1"
    )
    return _Estimates(params=params, vcov=vcov, working=working)


def _categorical_outcome(
    design: _Design,
    rows: pd.DataFrame,
    *,
    family: ModelFamily,
    levels: tuple[Any, ...] | None,
) -> tuple[np.ndarray, str, tuple[Any, ...]]:
    """The outcome as level codes 0..K-1, its name and its levels in order.

    The outcome must be a plain column. Its levels are a pandas Categorical's
    categories in their order, else the sorted values; an ordered family refuses text
    without a declared order. ``levels`` (a refit) fixes them to the original fit's: a
    value outside them is a DataError, an absent level an EstimationError for an
    ordered model (its threshold is not identified; mnlogit aliases its equation).
    """
    name, family_name = design.outcome, family.name
    if name not in rows.columns:
        raise FormulaError(
            f"the {family_name} outcome {name!r} must be a column of the data, not an "
            "expression"
        )
    values = rows[name].iloc[design.positions]
    if levels is None:
        levels = _outcome_levels(values, family=family, name=name)
    codes = pd.Categorical(values, categories=list(levels)).codes
    if (codes < 0).any():
        shown = ", ".join(plain(v) for v in pd.unique(values[codes < 0])[:5])
        raise DataError(
            f"{family_name} outcome {name!r} has values outside its levels: {shown}"
        )
    present = np.bincount(codes, minlength=len(levels)) > 0
    if not family.ordered and not present[0]:
        raise EstimationError(
            f"{family_name} outcome {name!r} has no respondent at its reference level "
            f"{plain(levels[0])}, so no coefficient keeps its meaning"
        )
    if family.ordered and not present.all():
        absent = ", ".join(plain(v) for v, p in zip(levels, present) if not p)
        raise EstimationError(
            f"{family_name} outcome {name!r} has no respondent at level(s) {absent}, "
            "so their thresholds cannot be estimated"
        )
    if present.sum() < 2:
        raise EstimationError(f"outcome {name!r} is constant in every used row")
    return codes.astype(int), name, levels


def _outcome_levels(
    values: pd.Series, *, family: ModelFamily, name: str
) -> tuple[Any, ...]:
    """The levels of a categorical outcome in order (see ``_categorical_outcome``)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        levels = [c for c in values.cat.categories if (values == c).any()]
    elif pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        levels = sorted(pd.unique(values).tolist())
    elif family.ordered:
        raise DataError(
            f"{family.name} outcome {name!r} holds text, whose order simval cannot "
            "know; code it as ordered numbers or an ordered pandas Categorical"
        )
    else:
        levels = sorted(pd.unique(values).tolist(), key=str)
    minimum = 3 if family.ordered else 2
    if len(levels) < minimum:
        raise EstimationError(
            f"{family.name} outcome {name!r} has {len(levels)} level(s); it needs at least "
            f"{minimum}"
            + (" (with two, use family='logit' or 'probit')" if minimum == 3 else "")
        )
    return tuple(levels)


def _categorical(
    sample: _Sample, *, solve: Callable[..., tuple[np.ndarray, ...]]
) -> _Estimates:
    """Estimates and covariance of a multinomial or ordered model, whose ``solve``
    (``_mnlogit``, ``_ordered``) gives the estimates, the Hessian and the scores; the
    sandwich's bread is the inverse observed information, as R's vcov, and HC1 scales
    HC0 by n / (n - k)."""
    name, outcome = sample.family.name, sample.outcome
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            params, hessian, scores = solve(
                sample.y, sample.X, levels=len(sample.levels)
            )
            bread = np.linalg.inv(-hessian)
        except (np.linalg.LinAlgError, ValueError) as exc:
            raise EstimationError(
                f"{name} model of {outcome!r} failed: {exc}"
            ) from None
    if not (np.isfinite(params).all() and np.isfinite(bread).all()):
        raise EstimationError(
            f"{name} model of {outcome!r} did not converge (some level is perfectly "
            "predicted by the terms, or too rare)"
        )
    if sample.cov == "nonrobust":
        return _Estimates(params=params, vcov=bread)
    vcov = sandwich_covariance.cov_white_simple(
        (scores, bread), use_correction=sample.cov == "HC1"
    )
    return _Estimates(params=params, vcov=vcov)


def _multinomial(sample: _Sample) -> _Estimates:
    """nnet::multinom's estimates and covariance (``_mnlogit``)."""
    return _categorical(sample, solve=_mnlogit)


_LATENT = {"logit": scipy.stats.logistic, "probit": scipy.stats.norm}
"""An ordered model's latent distribution by its ``ModelFamily.link``."""


def _ordered_model(sample: _Sample) -> _Estimates:
    """MASS::polr's estimates and covariance (``_ordered``) with the family's latent
    distribution."""
    distribution = _LATENT[sample.family.link]
    return _categorical(sample, solve=partial(_ordered, distribution=distribution))


_ESTIMATORS: dict[Estimator, Callable[[_Sample], _Estimates]] = {
    "ols": _ols,
    "glm": _glm,
    "multinomial": _multinomial,
    "ordered": _ordered_model,
}
"""The estimator of each ``ModelFamily.estimator``."""


def _mnlogit(
    y: np.ndarray, X: np.ndarray, *, levels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """statsmodels MNLogit by Newton's method: the estimates level by level (all terms of
    level 2, then level 3, ...), the Hessian and the per-respondent scores, all in that
    order. A level absent from ``y`` (a refit) is not estimated: see ``_categorical_terms``."""
    present = np.flatnonzero(np.bincount(y, minlength=levels))
    codes = np.searchsorted(present, y)
    model = sm.MNLogit(codes, X)
    result = model.fit(method="newton", maxiter=GLM_MAXITER, tol=1e-12, disp=False)
    if not result.mle_retvals.get("converged", False):
        raise np.linalg.LinAlgError(f"no convergence in {GLM_MAXITER} Newton steps")
    params = np.asarray(result.params).ravel(order="F")
    return params, model.hessian(params), model.score_obs(params)


def _ordered(
    y: np.ndarray, X: np.ndarray, *, levels: int, distribution: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ordered logit / probit on the (slopes, thresholds) scale R's polr reports,
    P(y <= k) = F(threshold_k - x'b), F the ``distribution``'s cdf: Newton's method with step halving on the
    log-likelihood (concave in these parameters), from zero slopes and the thresholds
    of the outcome's cumulative shares. Returns the estimates, the observed Hessian
    (the Jacobian of the analytic score, by central differences) and the
    per-respondent scores. statsmodels' OrderedModel reaches the same maximum, but its
    BFGS on numerical gradients took three quarters of a refit's time."""
    from statsmodels.tools.numdiff import approx_fprime

    k = X.shape[1]
    shares = np.cumsum(np.bincount(y, minlength=levels))[:-1] / len(y)
    theta = np.concatenate([np.zeros(k), distribution.ppf(shares)])

    def scores(t: np.ndarray) -> np.ndarray:
        return _ordered_scores(t, y, X, distribution=distribution)

    def hessian(t: np.ndarray) -> np.ndarray:
        found = approx_fprime(t, lambda u: scores(u).sum(axis=0), centered=True)
        return (found + found.T) / 2

    current = _ordered_loglik(theta, y, X, distribution=distribution)
    for _ in range(GLM_MAXITER):
        step = np.linalg.solve(hessian(theta), scores(theta).sum(axis=0))
        size = 1.0
        while True:
            candidate = theta - size * step
            value = _ordered_loglik(candidate, y, X, distribution=distribution)
            if value >= current - 1e-9 * abs(current):
                break
            size /= 2
            if size < 1e-8:
                raise np.linalg.LinAlgError("the line search found no better estimate")
        theta, current = candidate, value
        if np.max(np.abs(size * step)) < 1e-10:
            break
    else:
        raise np.linalg.LinAlgError(f"no convergence in {GLM_MAXITER} Newton steps")
    return theta, hessian(theta), scores(theta)


def _ordered_loglik(
    theta: np.ndarray, y: np.ndarray, X: np.ndarray, *, distribution: Any
) -> float:
    """The ordered model's log-likelihood (minus infinity where thresholds cross)."""
    k = X.shape[1]
    cuts = np.concatenate([[-np.inf], theta[k:], [np.inf]])
    eta = X @ theta[:k]
    probability = distribution.cdf(cuts[y + 1] - eta) - distribution.cdf(cuts[y] - eta)
    if not (np.diff(theta[k:]) > 0).all() or (probability <= 0).any():
        return -np.inf
    return float(np.log(probability).sum())


def _ordered_scores(
    theta: np.ndarray, y: np.ndarray, X: np.ndarray, *, distribution: Any
) -> np.ndarray:
    """Per-respondent gradient of the ordered model's log-likelihood in (slopes,
    thresholds): with z = threshold - x'b at the respondent's upper (u) and lower (l)
    cut, P = F(z_u) - F(z_l); d/db = -x (f(z_u) - f(z_l)) / P, d/d threshold_u =
    f(z_u) / P, d/d threshold_l = -f(z_l) / P."""
    k = X.shape[1]
    cuts = np.concatenate([[-np.inf], theta[k:], [np.inf]])
    eta = X @ theta[:k]
    upper, lower = cuts[y + 1] - eta, cuts[y] - eta
    f_upper, f_lower = distribution.pdf(upper), distribution.pdf(lower)
    probability = distribution.cdf(upper) - distribution.cdf(lower)
    out = np.zeros((len(y), len(theta)))
    out[:, :k] = -X * ((f_upper - f_lower) / probability)[:, None]
    rows = np.arange(len(y))
    top = y < len(cuts) - 2
    out[rows[top], k + y[top]] += f_upper[top] / probability[top]
    bottom = y > 0
    out[rows[bottom], k + y[bottom] - 1] -= f_lower[bottom] / probability[bottom]
    return out


def _categorical_terms(
    terms: list[str],
    keep: np.ndarray,
    design_sd: np.ndarray,
    scale: np.ndarray,
    *,
    family: ModelFamily,
    outcome: str,
    levels: tuple[Any, ...],
    y: np.ndarray,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """The coefficient names (``ModelFamily.coefficient_names``), estimable mask,
    design SDs and input scales of a categorical model, from the design's.

    Multinomial: the terms' values once per non-reference level; a level absent from
    the level codes ``y`` (a refit) has its terms aliased. Ordered: the slopes', then
    per threshold an SD and scale of 0, so that thresholds get no equivalence margin
    (they are not findings).
    """
    names = family.coefficient_names(terms, outcome=outcome, levels=levels)
    extra = len(levels) - 1
    if family.estimator == "multinomial":
        present = np.bincount(y, minlength=len(levels)) > 0
        mask = np.concatenate([keep & shown for shown in present[1:]])
        return names, mask, np.tile(design_sd, extra), np.tile(scale, extra)
    return (
        names,
        np.concatenate([keep, np.ones(extra, dtype=bool)]),
        np.concatenate([design_sd, np.zeros(extra)]),
        np.concatenate([scale, np.zeros(extra)]),
    )


def _separating_terms(
    y: np.ndarray, X: np.ndarray, *, family: ModelFamily, terms: list[str]
) -> list[str]:
    """Terms that alone split the outcome (a quick check; combinations are not searched).

    Binary outcome: the term's values for y = 1 and y = 0 do not overlap (ties allowed).
    Count outcome: the term is non-zero only where y = 0, so its coefficient runs to
    minus infinity.
    """
    found = []
    for term, x in zip(terms, X.T):
        if np.ptp(x) == 0:
            continue
        if family.outcome == "count":
            splits = not x[y > 0].any()
        else:
            ones, zeros = x[y == 1], x[y == 0]
            splits = ones.min() >= zeros.max() or ones.max() <= zeros.min()
        if splits:
            found.append(term)
    return found


def _separation(
    y: np.ndarray, X: np.ndarray, *, family: ModelFamily, outcome: str, terms: list[str]
) -> EstimationError:
    """The error for a (quasi-)separated model, naming the separating terms where found."""
    found = _separating_terms(y, X, family=family, terms=terms)
    where = (
        f"separated by {', '.join(map(repr, found))}"
        if found
        else "separated by a combination of terms"
    )
    return EstimationError(
        f"{family.name} model of {outcome!r} cannot be estimated: perfect or quasi-perfect "
        f"separation (fitted values run to the boundary), {where}"
    )


# ---- the result table ----------------------------------------------------------------------


def _table(
    terms: list[str],
    keep: np.ndarray,
    params: np.ndarray,
    vcov: np.ndarray,
    *,
    df: int | None,
    alpha: float,
) -> pd.DataFrame:
    """Tidy coefficient table; aliased terms get NaN. ``df=None`` means normal inference."""
    estimate = np.full(len(terms), np.nan)
    std_error = np.full(len(terms), np.nan)
    estimate[keep] = params
    with np.errstate(invalid="ignore", divide="ignore"):
        std_error[keep] = np.sqrt(np.diag(vcov))
        statistic = estimate / std_error
    # the distributions' own methods: freezing one builds a new distribution object,
    # which costs more than the rest of the table
    dist, args = (scipy.stats.norm, ()) if df is None else (scipy.stats.t, (df,))
    quantile = dist.ppf(1 - alpha / 2, *args)
    p_value = 2 * dist.sf(np.abs(statistic), *args)
    low, high = estimate - quantile * std_error, estimate + quantile * std_error
    values = (terms, estimate, std_error, statistic, p_value, low, high)
    return pd.DataFrame(dict(zip(COEF_COLUMNS, values, strict=True)))


def _same(a: object, b: object) -> bool:
    """Field equality for Fit: frames with ``equals`` (NaN == NaN), the rest with ``==``."""
    if isinstance(a, pd.DataFrame | pd.Series) and isinstance(b, type(a)):
        return a.equals(b)
    return a == b


def _first_line(exc: Exception) -> str:
    """The first line of an exception message (formulaic appends a highlighted formula)."""
    return str(exc).strip().splitlines()[0]
