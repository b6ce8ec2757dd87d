"""The names of the model families and covariance estimators simval fits.

Kept apart from ``simval.regression`` (which loads statsmodels) so that a study can be
declared and checked, and the command's help shown, without loading the estimators.
"""

from __future__ import annotations

from typing import Literal, get_args

from simval.errors import check_option

Family = Literal["ols", "logit", "probit", "poisson", "mnlogit", "ologit", "oprobit"]
FAMILIES: tuple[str, ...] = get_args(Family)
PPI_FAMILIES = ("ols", "logit", "probit", "poisson")
"""The families PPI++ rectifies (``simval.ppi``): one equation with a scalar outcome."""
ORDERED_FAMILIES = ("ologit", "oprobit")
CATEGORICAL_FAMILIES = ("mnlogit", *ORDERED_FAMILIES)
"""Families whose outcome is a set of levels: multinomial logit (nnet::multinom) and
ordered logit / probit (MASS::polr)."""
CATEGORICAL_COVS = ("nonrobust", "HC0", "HC1")
HC_TYPES = ("nonrobust", "HC0", "HC1", "HC2", "HC3")
CLUSTER_PREFIX = "cluster:"
THRESHOLD_PREFIX = "threshold "
"""How an ordered model's cut points are named: ``threshold 1|2`` (R's ``1|2``)."""
EQUATION_SEPARATOR = " | "
"""How a multinomial coefficient names its outcome level: ``age | vote=Labour``."""


def check_cov(cov: str) -> None:
    """Raise OptionError unless ``cov`` is one of HC_TYPES or ``cluster:<column>``."""
    if not (
        isinstance(cov, str)
        and cov.startswith(CLUSTER_PREFIX)
        and cov != CLUSTER_PREFIX
    ):
        check_option("cov", cov, (*HC_TYPES, f"{CLUSTER_PREFIX}<column>"))
