"""How validate's cost, its fresh-sample reference included, grows from 10k to 100k rows.

Each size runs ``validate`` with ``MarginalSimulator`` (the cheapest simulator, so the
cost is validate's own: human fits, the simulator's and the reference's replicates,
every metric and the bootstrap) on a 6-term OLS formula, 20 replicates and 200
bootstrap resamples, in a fresh process so that its peak memory (maximum resident set
size) is its own. Printed per size: seconds, peak MiB, and the peak's growth over the
process before validate ran (interpreter, libraries and data); then the 100k/10k ratios
from the same run (linear growth is 10x; the target is within 15x for time).

    .venv/bin/python benchmarks/bench_reference.py
    .venv/bin/python benchmarks/bench_reference.py --sizes 1000 10000   # quicker
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
import warnings

import numpy as np
import pandas as pd

from simval import MarginalSimulator, validate

FORMULA = "y ~ C(arm) + x1 + x2 + age + C(group) + C(rare)"
REPS = 20


def survey(n: int, *, seed: int = 0) -> pd.DataFrame:
    """A survey-shaped data set: a 0-10 outcome, two arms, three numeric covariates, a
    four-level factor, a rare (5%) dummy and two persona columns no formula reads."""
    rng = np.random.default_rng(seed)
    arm = rng.choice(["control", "treated"], size=n)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    age = rng.integers(18, 90, size=n).astype(float)
    group = rng.choice(["a", "b", "c", "d"], size=n)
    rare = np.where(rng.random(n) < 0.05, "yes", "no")
    latent = (
        5
        + 0.8 * (arm == "treated")
        + 0.6 * x1
        - 0.4 * x2
        + 0.02 * (age - 50)
        + 0.5 * (group == "b")
        + 0.7 * (rare == "yes")
        + 1.5 * rng.normal(size=n)
    )
    return pd.DataFrame(
        {
            "y": np.clip(np.round(latent), 0, 10).astype(int),
            "arm": arm,
            "x1": x1,
            "x2": x2,
            "age": age,
            "group": group,
            "rare": rare,
            "region": rng.choice(["n", "s", "e", "w"], size=n),
            "income": rng.lognormal(10, 0.5, size=n),
        }
    )


def _peak_mib() -> float:
    """This process's peak resident set size in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def run(n: int) -> tuple[float, float, float]:
    """(seconds, peak MiB, MiB before validate) of one validate call on n rows."""
    human = survey(n)
    before = _peak_mib()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        validate(FORMULA, human, MarginalSimulator(human), reps=REPS, progress=False)
    return time.perf_counter() - start, _peak_mib(), before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=(10_000, 100_000))
    args = parser.parse_args()
    small, large = args.sizes
    # a fresh process per size: the peak resident set size cannot be reset
    context = multiprocessing.get_context("spawn")
    with context.Pool(1, maxtasksperchild=1) as pool:
        found = {n: pool.apply(run, (n,)) for n in (small, large)}
    print(f"{'rows':>8} {'reps':>5} {'seconds':>9} {'peak MiB':>9} {'growth MiB':>11}")
    for n, (seconds, peak, before) in found.items():
        print(f"{n:>8} {REPS:>5} {seconds:>9.1f} {peak:>9.0f} {peak - before:>11.0f}")
    (t_small, m_small, b_small), (t_large, m_large, b_large) = (
        found[small],
        found[large],
    )
    print(
        f"ratio {large}/{small} rows ({large / small:g}x): time {t_large / t_small:.1f}x, "
        f"peak memory {m_large / m_small:.1f}x, "
        f"growth {(m_large - b_large) / (m_small - b_small):.1f}x"
    )


if __name__ == "__main__":
    main()
