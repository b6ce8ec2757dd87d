"""Prediction-powered inference (PPI++): valid estimates from few humans and a simulator.

Labeled rows are humans with the simulator's answers for exactly their personas;
unlabeled rows are personas the simulator alone answers. The rectified estimate of a
regression's coefficients solves the estimating equation

    mean_n g(x, y; θ) + λ [mean_N g(x̃, ỹ; θ) − mean_n g(x̂, ŷ; θ)] = 0,

where g is the gradient of the family's loss, (x, y) the humans' own data, (x̂, ŷ) the
simulator's for the same people and (x̃, ỹ) the simulator's for the unlabeled
personas (Angelopoulos, Duchi & Zrnic, "PPI++", 2023). Any simulated variable can sit
on either side of the formula: only the rows' values change, not the equation. With
λ = 0 it is the humans-only (classical) fit; the bracket has mean zero whatever the
simulator's bias, so the estimate stays consistent, and λ is tuned to make its
variance smallest.

``ppi_fit`` is the estimator on design matrices, checked against ppi-python where
only the outcome is predicted (tests/test_rectify.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.special
import scipy.stats

from simval.errors import EstimationError, OptionError, check_option
from simval.families import FAMILIES, Family

Lam = float | Literal["tuned"]

NEWTON_TOL = 1e-12
NEWTON_STEPS = 100


@dataclass(frozen=True)
class Rows:
    """One kind of row of a PPI problem: a design matrix and the outcome."""

    X: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class Estimate:
    """A rectified fit: coefficients, their covariance matrix and the λ used."""

    coef: np.ndarray
    cov: np.ndarray
    lam: float

    def std_errors(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov))

    def intervals(self, *, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Two-sided normal (1 − alpha) confidence intervals, per coefficient."""
        z = scipy.stats.norm.ppf(1 - alpha / 2)
        half = z * self.std_errors()
        return self.coef - half, self.coef + half


def ppi_fit(
    *,
    human: Rows,
    predicted: Rows,
    unlabeled: Rows,
    family: Family,
    lam: Lam = "tuned",
    covariates_predicted: bool,
) -> Estimate:
    """The PPI++ estimate of ``family``'s coefficients (see the module docstring).

    ``human``: the labeled rows' true data; ``predicted``: the simulator's data for the
    same rows, in the same order; ``unlabeled``: the simulator's data for the other
    personas. ``lam``: a number in [0, 1], or ``"tuned"``: the value minimising the
    summed variance of the coefficients, estimated at the λ = 1 fit and clipped to
    [0, 1] (as ppi-python tunes it). ``covariates_predicted``: whether a simulated
    variable is among the covariates; where none is, the Hessian (which depends on the
    covariates alone: probit's is its expected information) is estimated on the
    labeled and unlabeled rows together, as in ppi-python; otherwise on the humans.
    """
    check_option("family", family, FAMILIES)
    if lam != "tuned" and not (isinstance(lam, int | float) and 0 <= lam <= 1):
        raise OptionError(f"lam={lam!r} must be 'tuned' or a number in [0, 1]")
    if predicted.X.shape != human.X.shape or predicted.y.shape != human.y.shape:
        raise OptionError(
            "the predicted rows must match the human rows one for one "
            f"(design {predicted.X.shape} against {human.X.shape})"
        )
    pooled = not covariates_predicted
    if lam == "tuned":
        at_one = _solve(human, predicted, unlabeled, family=family, lam=1.0)
        lam = tuned_lam(
            at_one, human, predicted, unlabeled, family=family, pooled=pooled
        )
    coef = _solve(human, predicted, unlabeled, family=family, lam=float(lam))
    cov = _covariance(
        coef, human, predicted, unlabeled, family=family, lam=float(lam),
        pooled=pooled,
    )  # fmt: skip
    return Estimate(coef=coef, cov=cov, lam=float(lam))


def tuned_lam(
    coef: np.ndarray,
    human: Rows,
    predicted: Rows,
    unlabeled: Rows,
    *,
    family: Family,
    pooled: bool,
) -> float:
    """The λ in [0, 1] that minimises the trace of the rectified estimate's covariance,
    from the gradients at ``coef``: tr(H⁻¹ C H⁻¹) / (2 (1 + n/N) tr(H⁻¹ V H⁻¹)), with C
    the symmetrised cross-covariance of the human and predicted gradients (times 2)
    and V the covariance of every predicted gradient, labeled and unlabeled."""
    g = _gradients(coef, human, family)
    g_hat = _gradients(coef, predicted, family)
    g_unl = _gradients(coef, unlabeled, family)
    n, N = len(g), len(g_unl)
    inverse = np.linalg.inv(_hessian(coef, human, unlabeled, family, pooled=pooled))
    centred, centred_hat = g - g.mean(axis=0), g_hat - g_hat.mean(axis=0)
    cross = (centred.T @ centred_hat + centred_hat.T @ centred) / n
    spread = np.atleast_2d(np.cov(np.concatenate([g_hat, g_unl]).T))
    numerator = np.trace(inverse @ cross @ inverse)
    denominator = 2 * (1 + n / N) * np.trace(inverse @ spread @ inverse)
    return float(np.clip(numerator / denominator, 0, 1))


# --- the estimating equation --------------------------------------------------------------


def _solve(
    human: Rows, predicted: Rows, unlabeled: Rows, *, family: Family, lam: float
) -> np.ndarray:
    """The root of the rectified estimating equation, by Newton's method from zero
    with step halving on the rectified loss."""
    parts = ((human, 1.0), (predicted, -lam), (unlabeled, lam))

    def loss(coef: np.ndarray) -> float:
        return sum(w * _loss(coef, rows, family).mean() for rows, w in parts)

    coef = np.zeros(human.X.shape[1])
    current = loss(coef)
    for _ in range(NEWTON_STEPS):
        gradient = sum(
            w * _gradients(coef, rows, family).mean(axis=0) for rows, w in parts
        )
        jacobian = sum(w * _observed_hessian(coef, rows, family) for rows, w in parts)
        try:
            step = np.linalg.solve(jacobian, gradient)
        except np.linalg.LinAlgError as exc:
            raise EstimationError(
                "the rectified estimating equation is singular (collinear terms?)"
            ) from exc
        if np.max(np.abs(step)) < NEWTON_TOL * (1 + np.max(np.abs(coef))):
            return coef - step
        size = 1.0
        while size > 1e-10:
            candidate = coef - size * step
            value = loss(candidate)
            if np.isfinite(value) and value <= current + 1e-15 * abs(current):
                coef, current = candidate, value
                break
            size /= 2
        else:  # no step lowers the loss: at its minimum up to rounding, or stuck
            if np.max(np.abs(gradient)) < 1e-8:
                return coef
            break
    raise EstimationError(
        f"the rectified {family} fit did not converge in {NEWTON_STEPS} Newton steps"
    )


def _covariance(
    coef: np.ndarray,
    human: Rows,
    predicted: Rows,
    unlabeled: Rows,
    *,
    family: Family,
    lam: float,
    pooled: bool,
) -> np.ndarray:
    """H⁻¹ [cov(g − λ ĝ)/n + λ² cov(g̃)/N] H⁻¹: the sandwich of the rectified equation,
    gradients at ``coef``, covariances with n − 1 (as ppi-python computes them)."""
    g = _gradients(coef, human, family)
    g_hat = _gradients(coef, predicted, family)
    g_unl = _gradients(coef, unlabeled, family)
    n, N = len(g), len(g_unl)
    inverse = np.linalg.inv(
        _hessian(coef, human, unlabeled, family, pooled=pooled and lam != 0)
    )
    middle = np.atleast_2d(np.cov((g - lam * g_hat).T)) / n
    middle += lam**2 * np.atleast_2d(np.cov(g_unl.T)) / N
    return inverse @ middle @ inverse


def _hessian(
    coef: np.ndarray, human: Rows, unlabeled: Rows, family: Family, *, pooled: bool
) -> np.ndarray:
    """The Hessian of the humans' loss: on the human rows, or on the human and
    unlabeled rows together where it depends on the covariates alone (``pooled``)."""
    if not pooled:
        return _observed_hessian(coef, human, family)
    n, N = len(human.y), len(unlabeled.y)
    return (
        n * _observed_hessian(coef, human, family)
        + N * _observed_hessian(coef, unlabeled, family)
    ) / (n + N)


# --- the families' losses, per row, in the linear predictor η = Xθ ------------------------


def _loss(coef: np.ndarray, rows: Rows, family: Family) -> np.ndarray:
    """Each row's loss: the negative log-likelihood up to constants (half the squared
    residual for ols); linear in y for the GLMs, so expected answers may stand in."""
    eta, y = rows.X @ coef, rows.y
    if family == "ols":
        return 0.5 * (y - eta) ** 2
    if family == "logit":
        return np.logaddexp(0, eta) - y * eta
    if family == "poisson":
        return np.exp(eta) - y * eta
    return -(y * scipy.special.log_ndtr(eta) + (1 - y) * scipy.special.log_ndtr(-eta))


def _gradients(coef: np.ndarray, rows: Rows, family: Family) -> np.ndarray:
    """Each row's gradient of the loss (rows x coefficients)."""
    return rows.X * _first(rows.X @ coef, rows.y, family)[:, None]


def _observed_hessian(coef: np.ndarray, rows: Rows, family: Family) -> np.ndarray:
    """The mean over rows of the loss's second derivative (coefficients x coefficients)."""
    weight = _second(rows.X @ coef, rows.y, family)
    return (rows.X * weight[:, None]).T @ rows.X / len(rows.y)


def _first(eta: np.ndarray, y: np.ndarray, family: Family) -> np.ndarray:
    """d loss / d η."""
    if family == "ols":
        return eta - y
    if family == "logit":
        return scipy.special.expit(eta) - y
    if family == "poisson":
        return np.exp(eta) - y
    up, down = _mills(eta)  # probit: −y φ/Φ(η) + (1 − y) φ/Φ(−η)
    return -y * up + (1 - y) * down


def _second(eta: np.ndarray, y: np.ndarray, family: Family) -> np.ndarray:
    """d² loss / d η² (for probit its expectation, which does not involve y)."""
    if family == "ols":
        return np.ones_like(eta)
    if family == "logit":
        p = scipy.special.expit(eta)
        return p * (1 - p)
    if family == "poisson":
        return np.exp(eta)
    up, down = _mills(eta)  # probit: expected information φ²/(Φ(η)Φ(−η)), as glm
    return up * down


def _mills(eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """φ(η)/Φ(η) and φ(η)/Φ(−η), through log-densities so the tails stay finite."""
    log_density = scipy.stats.norm.logpdf(eta)
    return (
        np.exp(log_density - scipy.special.log_ndtr(eta)),
        np.exp(log_density - scipy.special.log_ndtr(-eta)),
    )
