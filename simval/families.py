"""The model families simval fits, as objects in one registry, and the covariance names.

Each family (``ModelFamily``) says in one place what the rest of simval asks of it: which
estimator of ``simval.regression`` fits it, what its outcome holds, its link, the latent
scale a standardised margin is measured on, the covariances and weights it takes, its
small-cell rule, its PPI++ loss (``simval.ppi``) and how its coefficients are named.
``family_of(name)`` looks one up; users keep spelling a family as a string
(``family="logit"``).

Kept apart from ``simval.regression`` (which loads statsmodels) so that a study can be
declared and checked, and the command's help shown, without loading the estimators.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from simval.errors import DataError, check_option

Family = Literal["ols", "logit", "probit", "poisson", "mnlogit", "ologit", "oprobit"]
HC_TYPES = ("nonrobust", "HC0", "HC1", "HC2", "HC3")
CLUSTER_PREFIX = "cluster:"
CLUSTERED = f"{CLUSTER_PREFIX}<column>"
"""How a list of allowed covariances names ``cluster:<column>``."""
THRESHOLD_PREFIX = "threshold "
"""How an ordered model's cut points are named: ``threshold 1|2`` (R's ``1|2``)."""
EQUATION_SEPARATOR = " | "
"""How a multinomial coefficient names its outcome level: ``age | vote=Labour``."""

Estimator = Literal["ols", "glm", "multinomial", "ordered"]
Outcome = Literal["number", "binary", "count", "levels", "ordered levels"]
Link = Literal["identity", "logit", "probit", "log"]
PpiLoss = Literal["squared", "logistic", "probit", "poisson"]
SmallCell = Literal["events per parameter"]

LOGISTIC_SD = math.pi / math.sqrt(3)
"""The standard deviation of the standard logistic distribution."""


@dataclass(frozen=True)
class ModelFamily:
    """One model family and everything simval reads from it.

    ``estimator``: the routine of ``simval.regression`` that fits it (``ols``: lm;
    ``glm``: IRLS with R's glm sandwich; ``multinomial``: nnet::multinom; ``ordered``:
    MASS::polr); only ``ols`` has t inference (residual df). ``outcome``: what the
    outcome holds (``number``, ``binary`` 0/1, ``count``, unordered ``levels`` or
    ``ordered levels``). ``link``: the GLM link, or an ordered model's latent
    distribution (logit: logistic, probit: normal). ``latent_sd``: the SD of the
    latent outcome a standardised margin is scaled by (None: the outcome's own SD).
    ``covs``: the covariances it takes (``CLUSTERED`` for ``cluster:<column>``);
    ``weighted_covs``: those it takes with survey weights (empty: no weights);
    ``absorbs``: whether fixed effects can be absorbed. ``small_cell``: the rule that
    flags a subgroup cell too small to judge beyond its size (``events per
    parameter``: the rarer answer of a binary outcome per coefficient, Peduzzi et al.
    1996), None for none. ``ppi_loss``: the loss PPI++ rectifies (``simval.ppi``), None
    where PPI++ does not apply. ``reference``: the R call whose numbers it matches.
    """

    name: str
    estimator: Estimator
    outcome: Outcome
    link: Link
    latent_sd: float | None
    covs: tuple[str, ...]
    reference: str
    weighted_covs: tuple[str, ...] = ()
    absorbs: bool = False
    small_cell: SmallCell | None = None
    ppi_loss: PpiLoss | None = None

    @property
    def categorical(self) -> bool:
        """Whether the outcome is a set of levels (a coefficient per level or threshold)."""
        return self.outcome in ("levels", "ordered levels")

    @property
    def ordered(self) -> bool:
        """Whether the outcome's levels are ordered (thresholds replace the intercept)."""
        return self.outcome == "ordered levels"

    def takes(self, cov: str, *, weighted: bool = False) -> bool:
        """Whether the family takes covariance ``cov`` (with survey weights: ``weighted``)."""
        allowed = self.weighted_covs if weighted else self.covs
        clustered = cov.startswith(CLUSTER_PREFIX) and CLUSTERED in allowed
        return clustered or cov in allowed

    def outcome_scale(self, *, outcome_sd: float) -> float:
        """The outcome SD a standardised margin is multiplied by: the latent scale's,
        or the outcome's own where there is no latent scale (ols)."""
        return outcome_sd if self.latent_sd is None else self.latent_sd

    def check_outcome(self, y: np.ndarray, *, name: str) -> None:
        """Raise DataError unless the numeric outcome ``y`` suits the family: 0/1 for a
        binary outcome, non-negative counts."""
        if self.outcome == "binary":
            bad, rule = np.unique(y[(y != 0) & (y != 1)]), "be 0/1 or bool"
        elif self.outcome == "count":
            bad, rule = np.unique(y[y < 0]), "be non-negative"
        else:
            return
        if bad.size:
            shown = ", ".join(f"{v:g}" for v in bad[:5])
            raise DataError(
                f"{self.name} outcome {name!r} must {rule}; found values {shown}"
            )

    def events(self, outcome: Any) -> int | None:
        """The events the small-cell rule counts in ``outcome`` (an array or Series
        of the outcome's values): the rarer answer of a binary outcome; None where
        the family has no such rule."""
        if self.small_cell is None:
            return None
        return min(int(np.sum(outcome == 1)), int(np.sum(outcome == 0)))

    def coefficient_names(
        self, terms: Sequence[str], *, outcome: str, levels: Sequence[Any] | None
    ) -> list[str]:
        """The coefficients' names, in the estimator's order, from the design's
        ``terms``: the terms themselves; for ``multinomial`` every term once per
        non-reference level, ``"<term> | <outcome>=<level>"`` (level by level, as
        nnet::multinom orders them); for ``ordered`` the slopes, then one
        ``"threshold <a>|<b>"`` per pair of adjacent levels (R's ``a|b``)."""
        if self.estimator == "multinomial":
            return [
                f"{term}{EQUATION_SEPARATOR}{outcome}={plain_level(level)}"
                for level in levels[1:]
                for term in terms
            ]
        if self.estimator == "ordered":
            return [
                *terms,
                *(
                    f"{THRESHOLD_PREFIX}{plain_level(a)}|{plain_level(b)}"
                    for a, b in itertools.pairwise(levels)
                ),
            ]
        return list(terms)


ALL_COVS = (*HC_TYPES, CLUSTERED)
SANDWICH_COVS = ("HC0", "HC1", CLUSTERED)
"""The covariances a GLM takes with survey weights (a sandwich of the scores)."""
CATEGORICAL_COVS = ("nonrobust", "HC0", "HC1")

REGISTRY: dict[str, ModelFamily] = {
    family.name: family
    for family in (
        ModelFamily(
            name="ols", estimator="ols", outcome="number", link="identity",
            latent_sd=None, covs=ALL_COVS, weighted_covs=ALL_COVS, absorbs=True,
            ppi_loss="squared", reference="lm",
        ),
        ModelFamily(
            name="logit", estimator="glm", outcome="binary", link="logit",
            latent_sd=LOGISTIC_SD, covs=ALL_COVS, weighted_covs=SANDWICH_COVS,
            small_cell="events per parameter", ppi_loss="logistic",
            reference='glm(family = binomial(link = "logit"))',
        ),
        ModelFamily(
            name="probit", estimator="glm", outcome="binary", link="probit",
            latent_sd=1.0, covs=ALL_COVS, weighted_covs=SANDWICH_COVS,
            small_cell="events per parameter", ppi_loss="probit",
            reference='glm(family = binomial(link = "probit"))',
        ),
        ModelFamily(
            name="poisson", estimator="glm", outcome="count", link="log",
            latent_sd=1.0, covs=ALL_COVS, weighted_covs=SANDWICH_COVS,
            ppi_loss="poisson", reference='glm(family = poisson(link = "log"))',
        ),
        ModelFamily(
            name="mnlogit", estimator="multinomial", outcome="levels", link="logit",
            latent_sd=LOGISTIC_SD, covs=CATEGORICAL_COVS, reference="nnet::multinom",
        ),
        ModelFamily(
            name="ologit", estimator="ordered", outcome="ordered levels",
            link="logit", latent_sd=LOGISTIC_SD, covs=CATEGORICAL_COVS,
            reference='MASS::polr(method = "logistic")',
        ),
        ModelFamily(
            name="oprobit", estimator="ordered", outcome="ordered levels",
            link="probit", latent_sd=1.0, covs=CATEGORICAL_COVS,
            reference='MASS::polr(method = "probit")',
        ),
    )
}  # fmt: skip
"""Every family simval fits, by the name ``family=`` takes, in the order of ``Family``.
Adding a family: its entry here and its name in ``Family``, its estimator in
``simval.regression`` (and its loss in ``simval.ppi`` if PPI++ applies), its R
reference in tests/reference and its tests."""

FAMILIES: tuple[str, ...] = get_args(Family)
PPI_FAMILIES = tuple(name for name, f in REGISTRY.items() if f.ppi_loss is not None)
"""The families PPI++ rectifies (``simval.ppi``): one equation with a scalar outcome."""
ORDERED_FAMILIES = tuple(name for name, f in REGISTRY.items() if f.ordered)
CATEGORICAL_FAMILIES = tuple(name for name, f in REGISTRY.items() if f.categorical)
"""Families whose outcome is a set of levels: multinomial logit (nnet::multinom) and
ordered logit / probit (MASS::polr)."""


def family_of(name: object, *, argument: str = "family") -> ModelFamily:
    """The family called ``name``, or OptionError naming ``argument`` and listing the
    families."""
    check_option(argument, name, FAMILIES)
    return REGISTRY[name]


def check_cov(cov: str) -> None:
    """Raise OptionError unless ``cov`` is one of HC_TYPES or ``cluster:<column>``."""
    if not (
        isinstance(cov, str)
        and cov.startswith(CLUSTER_PREFIX)
        and cov != CLUSTER_PREFIX
    ):
        check_option("cov", cov, ALL_COVS)


def plain_level(level: Any) -> str:
    """An outcome level as a coefficient name shows it (``3``, not ``3.0``)."""
    if isinstance(level, float) and level.is_integer():
        return str(int(level))
    return str(level)
