"""The numbers docs/rectify.md quotes for PPI++'s variance, gain and plans, from one run.

Prints, on the seeded designs of tests/test_ppi.py and tests/test_plan.py (imported
from there, so the numbers are the tests' own):

1. λ = 0 against λ = 1e-6, 8 clustered-OLS data sets (40 clusters of 10): the ratio of
   the standard errors with the equation's Jacobian (simval) and with ppi-python's
   bread (a Hessian pooled over the simulated rows as soon as λ > 0);
2. how often a tuned interval is wider than the humans-only one (200 data sets);
3. 90% coverage of the humans-only and the rectified intervals per design, with the
   binomial band, and with few clusters (40 of 10) where the humans' own undercover;
4. the share of 300 pilots whose plan reaches the target at the true components, at
   the pilot-estimate and at the safe sizes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_rectify.py   # about 6 minutes
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

import test_plan
import test_ppi
from support import binomial_tolerance

from simval.plan import _reached, plan
from simval.ppi import Problem, _estimate, ppi_fit

ALPHA = 0.1


def pooled_ratio(human, predicted, unlabeled, clusters) -> np.ndarray:
    """SE at λ = 1e-6 over SE at λ = 0 with ppi-python's bread: the humans' Hessian
    at λ = 0, the one pooled with the unlabeled rows' at any λ > 0."""
    problem = Problem(
        human=human, predicted=predicted, unlabeled=unlabeled, family="ols",
        pooled=True, clusters=clusters, arms=(),
    )  # fmt: skip
    zero, tiny = _estimate(problem, lam=0.0), _estimate(problem, lam=1e-6)
    inverse = np.linalg.inv(problem.ppi_python_hessian(tiny.coef))
    jacobian = problem.jacobian(tiny.coef, lam=1e-6)
    pooled = inverse @ jacobian @ tiny.cov @ jacobian @ inverse
    return np.sqrt(np.diag(pooled) / np.diag(zero.cov))


def jump() -> None:
    simval, theirs = [], []
    for seed in range(8):
        human, predicted, unlabeled, clusters = test_ppi.clustered_world(
            np.random.default_rng(seed), clusters=40, size=10, N=2000
        )
        options = {
            "human": human, "predicted": predicted, "unlabeled": unlabeled,
            "family": "ols", "covariates_predicted": False, "clusters": clusters,
        }  # fmt: skip
        zero, tiny = ppi_fit(lam=0.0, **options), ppi_fit(lam=1e-6, **options)
        simval.append(tiny.std_errors() / zero.std_errors())
        theirs.append(pooled_ratio(human, predicted, unlabeled, clusters))
    print("1. SE(λ = 1e-6) / SE(λ = 0), 8 clustered data sets, per coefficient:")
    print(f"   simval (Jacobian): {np.min(simval):.6f}-{np.max(simval):.6f}")
    print(f"   ppi-python's pooled bread: {np.min(theirs):.2f}-{np.max(theirs):.2f}")


def never_wider() -> None:
    rng = np.random.default_rng(100)
    ratios = []
    for _ in range(200):
        options = test_ppi.rare_dummy_world(rng, n=100, N=1000)
        humans = ppi_fit(lam=0.0, **options)
        tuned = ppi_fit(lam="tuned", tune_for=2, tune_at="fit", **options)
        ratios.append(tuned.std_errors()[2] / humans.std_errors()[2])
    ratios = np.array(ratios)
    print(
        "2. tuned / humans-only SE of a rare dummy, 200 data sets of 100 humans: "
        f"wider in {np.mean(ratios > 1):.0%} (max {ratios.max():.3f}), "
        f"narrower by over 2% in {np.mean(ratios < 0.98):.0%}"
    )


def coverage(
    design: str, *, datasets: int, per_term: bool, seed: int, clusters: int = 200
) -> None:
    covered, ratios = test_ppi.coverage_counts(
        design, datasets=datasets, per_term=per_term, seed=seed, clusters=clusters
    )
    rates = "; ".join(
        f"{method} {', '.join(f'{r:.3f}' for r in count / datasets)}"
        for method, count in covered.items()
    )
    print(
        f"   {design} ({datasets} data sets): {rates} (band ±"
        f"{binomial_tolerance(1 - ALPHA, datasets):.3f}); median SE ratio "
        f"{', '.join(f'{r:.2f}' for r in np.median(ratios, axis=0))}"
    )


def pilots() -> None:
    print("4. share of 300 pilots (300 humans) whose plan reaches the target:")
    for target in ({"effective_n": 1000}, {"half_width": 0.05}):
        rng = np.random.default_rng(5)
        truth = test_plan.pilot_components(rng, n=200_000, N=200_000)
        z = scipy.stats.norm.ppf(0.975)
        goal = target.get("effective_n") or truth["human"] * (z / 0.05) ** 2
        bare = test_plan._bare_pilot()
        reached = {"point": 0, "safe": 0}
        sizes = {"point": [], "safe": []}
        for _ in range(300):
            part = test_plan.pilot_components(rng, n=300, N=3000)
            row = plan(
                dataclasses.replace(bare, components=pd.DataFrame([part])),
                cost_human=10, cost_simulated=0.5, alpha=0.05, **target,
            ).table.iloc[0]  # fmt: skip
            for kind, prefix in (("point", ""), ("safe", "safe_")):
                n, N = row[f"{prefix}n_human"], row[f"{prefix}n_simulated"]
                reached[kind] += _reached(truth, n=n, N=N) >= goal
                sizes[kind].append((n, N))
        for kind, count in reached.items():
            low, high = np.min(sizes[kind], axis=0), np.max(sizes[kind], axis=0)
            print(
                f"   {target}: {kind} sizes n {low[0]}-{high[0]}, N {low[1]}-"
                f"{high[1]}: {count / 300:.3f} reach it"
            )


if __name__ == "__main__":
    jump()
    never_wider()
    print("3. 90% coverage per coefficient (biased but informative simulators):")
    for design, (datasets, per_term, seed) in test_ppi.COVERAGE_DESIGNS.items():
        coverage(design, datasets=datasets, per_term=per_term, seed=seed)
    coverage("few-clusters ols", datasets=1000, per_term=True, seed=22, clusters=40)
    pilots()
