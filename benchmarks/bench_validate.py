"""How validate's cost grows with rows and replicates, against a plain statsmodels loop.

The baseline does the same statistical work a researcher would write by hand:
for each replicate, resample the rows with replacement and fit the formula with
``statsmodels.formula.api`` and HC1 errors. validate does that too, through its own
design reuse, plus every metric (JSD, variance ratios, heterogeneity, coherence,
coefficient recovery). Printed: seconds for each and their ratio, from one run.

    .venv/bin/python benchmarks/bench_validate.py            # 1k, 10k, 100k rows
    .venv/bin/python benchmarks/bench_validate.py --quick    # 1k, 10k rows
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from simval import BootstrapSimulator, validate

FORMULA = "y ~ C(arm) + x + C(group)"


def survey(n: int, *, seed: int = 0) -> pd.DataFrame:
    """A survey-shaped data set: a 1-5 outcome, two arms, a numeric and a factor covariate."""
    rng = np.random.default_rng(seed)
    arm = rng.choice(["control", "treated"], size=n)
    x = rng.normal(size=n)
    group = rng.choice(["a", "b", "c", "d"], size=n)
    latent = (
        0.4 * (arm == "treated") + 0.3 * x + 0.2 * (group == "b") + rng.normal(size=n)
    )
    y = 1 + np.searchsorted([-1.2, -0.4, 0.4, 1.2], latent)
    return pd.DataFrame({"y": y, "arm": arm, "x": x, "group": group})


def baseline(human: pd.DataFrame, *, reps: int, seed: int) -> float:
    """Seconds for ``reps`` resample-and-fit rounds with the statsmodels formula API."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    smf.ols(FORMULA, human).fit(cov_type="HC1")
    for _ in range(reps):
        sample = human.iloc[rng.integers(len(human), size=len(human))]
        smf.ols(FORMULA, sample).fit(cov_type="HC1")
    return time.perf_counter() - start


def simval_seconds(human: pd.DataFrame, *, reps: int, seed: int) -> float:
    """Seconds for validate with the bootstrap simulator and ``reps`` replicates."""
    start = time.perf_counter()
    validate(FORMULA, human, BootstrapSimulator(human), reps=reps, seed=seed)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 100k-row case")
    args = parser.parse_args()
    sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
    print(
        f"{'rows':>8} {'reps':>5} {'statsmodels s':>14} {'validate s':>11} {'ratio':>7}"
    )
    for n in sizes:
        human = survey(n)
        for reps in (5, 20):
            base = baseline(human, reps=reps, seed=1)
            ours = simval_seconds(human, reps=reps, seed=1)
            print(f"{n:>8} {reps:>5} {base:>14.3f} {ours:>11.3f} {ours / base:>7.2f}")


if __name__ == "__main__":
    main()
