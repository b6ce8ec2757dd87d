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
variance smallest. The variance is the sandwich of this equation with its own
Jacobian, so it moves continuously from the humans-only variance at λ = 0.

``ppi_fit`` is the estimator on design matrices, checked against ppi-python where
only the outcome is predicted (tests/test_ppi.py). ``simval.rectify`` applies it to a
study's formulas and a simulator's answers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats

from simval.errors import EstimationError, OptionError, check_option, refuse
from simval.families import PPI_FAMILIES, Family, PpiLoss, family_of

Lam = float | Literal["tuned"]
TuneAt = Literal["one", "fit"]
TUNE_AT = ("one", "fit")
SETTLED = 1e-8

NEWTON_TOL = 1e-12
NEWTON_STEPS = 100


@dataclass(frozen=True)
class Rows:
    """One kind of row of a PPI problem: a design matrix and the outcome."""

    X: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class Components:
    """Per coefficient, the variance components of a rectified fit, each n times the
    variance (or covariance) of a mean over n rows, in the coefficient's units:
    ``human``, the humans' own influence (n × the humans-only variance); ``cross``, its
    covariance with the centred predicted influence; ``predicted``, the latter's
    variance; ``unlabeled``, a simulated-only row's. At any λ, n humans and N
    simulated-only rows the variance is [human − 2λ cross + λ² (predicted + (n/N)
    unlabeled)] / n: what planning (``simval.plan``) extrapolates.

    How well the pilot knows them, from the fourth moments of the labeled units'
    (rows', or clusters') influences, so that heavy tails count: ``human_error``,
    the standard error of log ``human``; ``correlation_error``, that of the PPI
    correlation's Fisher z (1/√n for normal influences)."""

    human: np.ndarray
    cross: np.ndarray
    predicted: np.ndarray
    unlabeled: np.ndarray
    human_error: np.ndarray
    correlation_error: np.ndarray

    @property
    def correlation(self) -> np.ndarray:
        """The PPI correlation: of the human and the predicted influence."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.cross / np.sqrt(self.human * self.predicted)

    def variance(self, *, lam: float, n: float, N: float) -> np.ndarray:
        """Each coefficient's variance with n humans, N simulated-only rows and λ."""
        if not N:  # no simulated-only rows: the humans' own fit (λ = 0)
            return self.human / n
        spread = self.predicted + n / N * self.unlabeled
        return (self.human - 2 * lam * self.cross + lam**2 * spread) / n


@dataclass(frozen=True)
class Estimate:
    """A rectified fit: coefficients, their covariance matrix, the λ used and the
    variance components it is made of (``Components``)."""

    coef: np.ndarray
    cov: np.ndarray
    lam: float
    components: Components

    @property
    def correlation(self) -> np.ndarray:
        """The PPI correlation per coefficient."""
        return self.components.correlation

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
    clusters: np.ndarray | None = None,
    arms: Sequence[tuple[Rows, float]] = (),
    tune_for: int | None = None,
    tune_at: TuneAt = "one",
) -> Estimate:
    """The PPI++ estimate of ``family``'s coefficients (see the module docstring).

    ``human``: the labeled rows' true data; ``predicted``: the simulator's data for the
    same rows, in the same order; ``unlabeled``: the simulator's data for the other
    personas. ``lam``: a number in [0, 1], or ``"tuned"``: the value minimising the
    summed variance of the coefficients, clipped to [0, 1] (see ``tune_at``).

    The covariance is the sandwich with the equation's own Jacobian at λ (``Problem.
    jacobian``): the humans' Hessian at λ = 0 and continuous in λ. (ppi-python
    switches to a Hessian pooled over the labeled and unlabeled rows as soon as
    λ > 0; for a clustered design that jump moved standard errors by 0.6-1.4x between
    λ = 0 and 1e-6. Where only the outcome is predicted its pooled Hessian is the
    Jacobian at λ = N / (n + N).) ``covariates_predicted``: whether a simulated
    variable is among the covariates; only ppi-python's tuning rule uses it (its
    Hessian is pooled where none is).

    ``clusters``: a cluster label per labeled row; the labeled gradients are then summed
    within clusters (the unlabeled rows stay independent). ``arms``: where the
    unlabeled rows are the labeled personas re-drawn with a re-randomised arm, each
    arm's predicted rows for the labeled personas (in their order) and its
    probability; the unlabeled mean then depends on the labeled personas, so each
    labeled predicted gradient is centred on its mean over the arms (``Gradients``).
    ``tune_for``: the coefficient whose variance the tuned λ minimises (None: their sum).
    ``tune_at``: where the tuned λ's gradients are taken: ``"one"``, the λ = 1 fit
    (ppi-python's rule), or ``"fit"``, the estimate itself, λ re-tuned from the
    humans' own fit until it settles, with the Jacobian at each λ, and λ = 0 instead
    where the estimated variance there is smaller (the tuning formula holds the
    Jacobian fixed, the variance does not): a fit tuned so is never less precise than
    the humans' own by its own estimate. With a biased simulator the λ = 1 fit's
    gradients can overstate the covariance and the λ chosen there cost precision.
    """
    check_option("family", family, PPI_FAMILIES)
    if lam != "tuned" and not (
        isinstance(lam, int | float) and not isinstance(lam, bool) and 0 <= lam <= 1
    ):
        raise refuse("lam", lam, "'tuned' or a number in [0, 1]")
    if predicted.X.shape != human.X.shape or predicted.y.shape != human.y.shape:
        raise OptionError(
            "the predicted rows must match the human rows one for one "
            f"(design {predicted.X.shape} against {human.X.shape})"
        )
    for rows, _ in arms:
        if rows.X.shape != human.X.shape:
            raise OptionError(
                "each arm's predicted rows must match the human rows one for one "
                f"(design {rows.X.shape} against {human.X.shape})"
            )
    if clusters is not None and len(clusters) != len(human.y):
        raise OptionError(
            f"{len(clusters)} cluster labels for {len(human.y)} labeled rows"
        )
    problem = Problem(
        human=human, predicted=predicted, unlabeled=unlabeled, family=family,
        pooled=not covariates_predicted, clusters=clusters, arms=tuple(arms),
    )  # fmt: skip
    check_option("tune_at", tune_at, TUNE_AT)
    tuned = lam == "tuned"
    if tuned and tune_at == "fit":  # from the humans' own fit: no λ = 1 solve,
        lam = _settled_lam(problem, start=0.0, coef=tune_for)  # whose equation may be
    elif tuned:  # singular where the simulator's answers hardly vary
        one = _solve(problem, lam=1.0)
        at_one = problem.gradients(one, lam=1.0)
        hessian = problem.ppi_python_hessian(one)
        lam = tuned_lam(replace(at_one, hessian=hessian), coef=tune_for)
    estimate = _estimate(problem, lam=float(lam))
    if tuned and tune_at == "fit" and estimate.lam > 0:  # never wider than λ = 0
        humans = _estimate(problem, lam=0.0)
        if _size(humans.cov, coef=tune_for) < _size(estimate.cov, coef=tune_for):
            return humans
    return estimate


def _estimate(problem: Problem, *, lam: float) -> Estimate:
    """The fit at λ, its covariance from the equation's own Jacobian at the root."""
    coef = _solve(problem, lam=lam)
    at = problem.gradients(coef, lam=lam)
    if np.linalg.matrix_rank(at.hessian) < len(coef):
        raise EstimationError(
            "the rows do not identify every coefficient (collinear or constant terms)"
        )
    return Estimate(
        coef=coef,
        cov=_covariance(at, lam=lam),
        lam=lam,
        components=_components(at),
    )


def _size(cov: np.ndarray, *, coef: int | None) -> float:
    """What a tuned λ minimises: the summed variance, or the ``coef``-th one."""
    return float(np.trace(cov) if coef is None else cov[coef, coef])


@dataclass(frozen=True)
class Problem:
    """The rows of one PPI fit and how its variance is estimated (see ``ppi_fit``)."""

    human: Rows
    predicted: Rows
    unlabeled: Rows
    family: Family
    pooled: bool
    clusters: np.ndarray | None
    arms: tuple[tuple[Rows, float], ...]

    @property
    def loss(self) -> Loss:
        """The family's PPI++ loss (``LOSSES``)."""
        return LOSSES[family_of(self.family).ppi_loss]

    def gradients(self, coef: np.ndarray, *, lam: float) -> Gradients:
        """Every row's gradient, and the equation's Jacobian at λ, at ``coef``."""
        g_hat = _gradients(coef, self.predicted, self.loss)
        centred = g_hat - sum(
            share * _gradients(coef, rows, self.loss) for rows, share in self.arms
        )
        return Gradients(
            human=_gradients(coef, self.human, self.loss),
            predicted=g_hat,
            centred=centred,
            unlabeled=_gradients(coef, self.unlabeled, self.loss),
            hessian=self.jacobian(coef, lam=lam),
            clusters=self.clusters,
            plain=self.clusters is None and not self.arms,
        )  # fmt: skip

    def jacobian(self, coef: np.ndarray, *, lam: float) -> np.ndarray:
        """The rectified equation's Jacobian, H_n − λ Ĥ_n + λ H̃_N (mean second
        derivatives of the loss on the humans', the predicted and the unlabeled rows):
        the humans' own Hessian at λ = 0 and continuous in λ."""
        return sum(
            w * _observed_hessian(coef, rows, self.loss) for rows, w in self.parts(lam)
        )

    def parts(self, lam: float) -> tuple[tuple[Rows, float], ...]:
        """The rows of the rectified equation, each with its weight."""
        return ((self.human, 1.0), (self.predicted, -lam), (self.unlabeled, lam))

    def ppi_python_hessian(self, coef: np.ndarray) -> np.ndarray:
        """ppi-python's Hessian for its tuned λ: the humans' own, pooled with the
        unlabeled rows' where no covariate is predicted (``pooled``)."""
        human = _observed_hessian(coef, self.human, self.loss)
        if not self.pooled:
            return human
        n, N = len(self.human.y), len(self.unlabeled.y)
        unlabeled = _observed_hessian(coef, self.unlabeled, self.loss)
        return (n * human + N * unlabeled) / (n + N)


@dataclass(frozen=True)
class Gradients:
    """Per-row gradients at one coefficient vector (rows x coefficients).

    ``centred``: the labeled predicted gradients minus their mean over the arms (the
    predicted gradients themselves without re-randomised arms): what the labeled rows
    contribute to the rectifier's variance. ``plain``: iid rows and no arms, where the
    variances are pooled as ppi-python pools them.
    """

    human: np.ndarray
    predicted: np.ndarray
    centred: np.ndarray
    unlabeled: np.ndarray
    hessian: np.ndarray
    clusters: np.ndarray | None
    plain: bool

    def spread(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The labeled rows' covariance of ``a`` with ``b`` (coefficients x
        coefficients) such that its 1/n is that of their means: summed within
        clusters, times G / (G − 1); without clusters np.cov's n − 1."""
        n = len(a)
        if self.clusters is not None:
            codes = np.unique(self.clusters, return_inverse=True)[1]
            a = np.stack([np.bincount(codes, weights=c) for c in a.T], axis=1)
            b = np.stack([np.bincount(codes, weights=c) for c in b.T], axis=1)
        groups = len(a)
        return (a - a.mean(axis=0)).T @ (b - b.mean(axis=0)) * groups / (groups - 1) / n


def tuned_lam(at: Gradients, *, coef: int | None = None) -> float:
    """The λ in [0, 1] that minimises the trace of the rectified estimate's covariance
    (or its ``coef``-th diagonal element), from the gradients ``at`` a fit:
    tr(H⁻¹ C H⁻¹) / (2 tr(H⁻¹ [V + (n/N) Ṽ] H⁻¹)), H the gradients' ``hessian``,
    with C the symmetrised cross-covariance of the human and (centred) predicted
    gradients times 2, V the centred predicted gradients' covariance and Ṽ the
    unlabeled ones'. For iid rows without arms, V and Ṽ are both the covariance of
    every predicted gradient and C's covariances divide by n: ppi-python's formula."""
    n, N = len(at.human), len(at.unlabeled)
    inverse = np.linalg.inv(at.hessian)
    if at.plain:
        centred = at.human - at.human.mean(axis=0)
        centred_hat = at.predicted - at.predicted.mean(axis=0)
        cross = (centred.T @ centred_hat + centred_hat.T @ centred) / n
        spread = np.atleast_2d(np.cov(np.concatenate([at.predicted, at.unlabeled]).T))
        spread = (1 + n / N) * spread
    else:
        half = at.spread(at.human, at.centred)
        cross = half + half.T
        spread = at.spread(at.centred, at.centred)
        spread += n / N * np.atleast_2d(np.cov(at.unlabeled.T))

    def size(matrix: np.ndarray) -> float:
        sandwich = inverse @ matrix @ inverse
        return float(np.trace(sandwich) if coef is None else sandwich[coef, coef])

    return float(np.clip(size(cross) / (2 * size(spread)), 0, 1))


def _settled_lam(problem: Problem, *, start: float, coef: int | None) -> float:
    """The λ that is the tuned λ at its own estimate: λ ← tuned_lam(gradients at
    θ̂(λ)) from ``start`` until it moves by under ``SETTLED``; where the iteration
    steps over the fixed point (the Jacobian moves with λ), Brent's root of
    tuned_lam(λ) − λ between the last λ on either side of it."""

    def gap(lam: float) -> float:
        at = problem.gradients(_solve(problem, lam=lam), lam=lam)
        return tuned_lam(at, coef=coef) - lam

    lam, sides = start, {}
    for _ in range(NEWTON_STEPS):
        step = gap(lam)
        if abs(step) < SETTLED:
            return lam + step
        sides[step > 0] = lam
        if len(sides) == 2:
            low, high = sorted(sides.values())
            return float(scipy.optimize.brentq(gap, low, high, xtol=SETTLED / 10))
        lam += step
    raise EstimationError(f"the tuned λ did not settle in {NEWTON_STEPS} steps")


# --- the estimating equation --------------------------------------------------------------


def _solve(problem: Problem, *, lam: float) -> np.ndarray:
    """The root of the rectified estimating equation, by Newton's method from zero
    with step halving on the rectified loss."""
    human, rule = problem.human, problem.loss
    parts = problem.parts(lam)

    def loss(coef: np.ndarray) -> float:
        return sum(w * _loss(coef, rows, rule).mean() for rows, w in parts)

    coef = np.zeros(human.X.shape[1])
    current = loss(coef)
    for _ in range(NEWTON_STEPS):
        gradient = sum(
            w * _gradients(coef, rows, rule).mean(axis=0) for rows, w in parts
        )
        jacobian = problem.jacobian(coef, lam=lam)
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
        f"the rectified {problem.family} fit did not converge in {NEWTON_STEPS} Newton steps"
    )


def _covariance(at: Gradients, *, lam: float) -> np.ndarray:
    """J⁻¹ [cov(g − λ ĝ)/n + λ² cov(g̃)/N] J⁻¹: the sandwich of the rectified equation,
    J its Jacobian at λ (``Problem.jacobian``), covariances with n − 1 (as ppi-python
    computes them), ĝ centred over the arms and the labeled part summed within
    clusters where there are any (``Gradients``)."""
    n, N = len(at.human), len(at.unlabeled)
    inverse = np.linalg.inv(at.hessian)
    residual = at.human - lam * at.centred
    middle = at.spread(residual, residual) / n
    middle += lam**2 * np.atleast_2d(np.cov(at.unlabeled.T)) / N
    return inverse @ middle @ inverse


def _components(at: Gradients) -> Components:
    """The variance components (``Components``) in the coefficients' units, J⁻¹ · J⁻¹."""
    inverse = np.linalg.inv(at.hessian)

    def diagonal(matrix: np.ndarray) -> np.ndarray:
        return np.diag(inverse @ matrix @ inverse).copy()

    human_error, correlation_error = _errors(at, inverse=inverse)
    return Components(
        human=diagonal(at.spread(at.human, at.human)),
        cross=diagonal(at.spread(at.human, at.centred)),
        predicted=diagonal(at.spread(at.centred, at.centred)),
        unlabeled=diagonal(np.atleast_2d(np.cov(at.unlabeled.T))),
        human_error=human_error,
        correlation_error=correlation_error,
    )


def _errors(at: Gradients, *, inverse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per coefficient, the standard errors of log σ² and of the PPI correlation's
    Fisher z over the m labeled units (rows, or clusters' sums), from the standardised
    influences a, b: Var(log s²) = (E a⁴ − 1)/m, and the sample correlation's
    large-sample variance for any distribution (its fourth moments), over (1 − ρ²)²."""
    own, predicted = at.human, at.centred
    if at.clusters is not None:
        codes = np.unique(at.clusters, return_inverse=True)[1]
        own, predicted = (
            np.stack([np.bincount(codes, weights=c) for c in g.T], axis=1)
            for g in (own, predicted)
        )
    m = len(own)
    with np.errstate(invalid="ignore", divide="ignore"):
        a, b = (
            (u - u.mean(axis=0)) / u.std(axis=0)
            for u in (own @ inverse.T, predicted @ inverse.T)
        )
        r = np.mean(a * b, axis=0)
        fourth = {k: np.mean(a ** (4 - k) * b**k, axis=0) for k in range(5)}
        spread_r = (
            r**2 / 4 * (fourth[0] + 2 * fourth[2] + fourth[4])
            - r * (fourth[1] + fourth[3])
            + fourth[2]
        )
        return (
            np.sqrt(np.maximum(fourth[0] - 1, 0) / m),
            np.sqrt(np.maximum(spread_r, 0) / m) / (1 - r**2),
        )


# --- the families' losses, per row, in the linear predictor η = Xθ ------------------------


@dataclass(frozen=True)
class Loss:
    """A family's PPI++ loss per row in the linear predictor η = Xθ: ``value``, the
    negative log-likelihood up to constants (half the squared residual for ols),
    linear in y for the GLMs so that expected answers may stand in; ``first``, d loss
    / d η; ``second``, d² loss / d η² (for probit its expectation, free of y)."""

    value: Callable[[np.ndarray, np.ndarray], np.ndarray]
    first: Callable[[np.ndarray, np.ndarray], np.ndarray]
    second: Callable[[np.ndarray, np.ndarray], np.ndarray]


def _mills(eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """φ(η)/Φ(η) and φ(η)/Φ(−η), through log-densities so the tails stay finite."""
    log_density = -0.5 * eta**2 - 0.5 * math.log(2 * math.pi)
    return (
        np.exp(log_density - scipy.special.log_ndtr(eta)),
        np.exp(log_density - scipy.special.log_ndtr(-eta)),
    )


def _probit_first(eta: np.ndarray, y: np.ndarray) -> np.ndarray:
    """−y φ/Φ(η) + (1 − y) φ/Φ(−η)."""
    up, down = _mills(eta)
    return -y * up + (1 - y) * down


def _probit_second(eta: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The expected information φ²/(Φ(η)Φ(−η)), as glm."""
    up, down = _mills(eta)
    return up * down


def _logistic_second(eta: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = scipy.special.expit(eta)
    return p * (1 - p)


LOSSES: dict[PpiLoss, Loss] = {
    "squared": Loss(
        value=lambda eta, y: 0.5 * (y - eta) ** 2,
        first=lambda eta, y: eta - y,
        second=lambda eta, y: np.ones_like(eta),
    ),
    "logistic": Loss(
        value=lambda eta, y: np.logaddexp(0, eta) - y * eta,
        first=lambda eta, y: scipy.special.expit(eta) - y,
        second=_logistic_second,
    ),
    "poisson": Loss(
        value=lambda eta, y: np.exp(eta) - y * eta,
        first=lambda eta, y: np.exp(eta) - y,
        second=lambda eta, y: np.exp(eta),
    ),
    "probit": Loss(
        value=lambda eta, y: (
            -(y * scipy.special.log_ndtr(eta) + (1 - y) * scipy.special.log_ndtr(-eta))
        ),
        first=_probit_first,
        second=_probit_second,
    ),
}
"""The PPI++ losses, by the name a family's ``ppi_loss`` gives (``simval.families``)."""


def _loss(coef: np.ndarray, rows: Rows, loss: Loss) -> np.ndarray:
    """Each row's loss."""
    return loss.value(rows.X @ coef, rows.y)


def _gradients(coef: np.ndarray, rows: Rows, loss: Loss) -> np.ndarray:
    """Each row's gradient of the loss (rows x coefficients)."""
    return rows.X * loss.first(rows.X @ coef, rows.y)[:, None]


def _observed_hessian(coef: np.ndarray, rows: Rows, loss: Loss) -> np.ndarray:
    """The mean over rows of the loss's second derivative (coefficients x coefficients)."""
    weight = loss.second(rows.X @ coef, rows.y)
    return (rows.X * weight[:, None]).T @ rows.X / len(rows.y)
