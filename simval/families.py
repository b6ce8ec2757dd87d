"""The names of the model families and covariance estimators simval fits.

Kept apart from ``simval.regression`` (which loads statsmodels) so that a study can be
declared and checked, and the command's help shown, without loading the estimators.
"""

from __future__ import annotations

from typing import Literal, get_args

from simval.errors import check_option

Family = Literal["ols", "logit", "probit", "poisson"]
FAMILIES: tuple[str, ...] = get_args(Family)
HC_TYPES = ("nonrobust", "HC0", "HC1", "HC2", "HC3")
CLUSTER_PREFIX = "cluster:"


def check_cov(cov: str) -> None:
    """Raise OptionError unless ``cov`` is one of HC_TYPES or ``cluster:<column>``."""
    if not (
        isinstance(cov, str)
        and cov.startswith(CLUSTER_PREFIX)
        and cov != CLUSTER_PREFIX
    ):
        check_option("cov", cov, (*HC_TYPES, f"{CLUSTER_PREFIX}<column>"))
