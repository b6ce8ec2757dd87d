"""validate's cost on a continuous outcome, against the same call on a binary one.

Both outcomes come from one latent model, ``latent = 0.5 x + 0.3 [g = b] + noise``: the
binary outcome is ``latent > 0``, the continuous one ``latent`` itself, so every
respondent of every replicate gives a value no other gave. The simulator draws from
the same process (a perfect simulator), and each call is ``validate("y ~ x + C(g)",
...)`` in formula mode with its fresh-sample reference, with the default 200 bootstrap
resamples and with none. Printed: the best of ``--repeats`` wall-clock times of each
call and the continuous/binary ratio, all from one run (a warm-up call first, so
imports are not timed).

    .venv/bin/python benchmarks/bench_continuous.py               # n = 1,000, reps 20
    .venv/bin/python benchmarks/bench_continuous.py --n 1000 10000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from simval import FunctionSimulator, validate

FORMULA = "y ~ x + C(g)"


def latent(x: np.ndarray, g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The outcome before it is observed: 0.5 x + 0.3 [g = b] + standard normal noise."""
    return 0.5 * x + 0.3 * (g == "b") + rng.normal(size=len(x))


def observe(values: np.ndarray, kind: str) -> np.ndarray:
    """The outcome as answered: ``latent > 0`` (binary) or the latent value itself."""
    return (values > 0).astype(float) if kind == "binary" else values


def humans(n: int, kind: str, *, seed: int = 0) -> pd.DataFrame:
    """n respondents: a numeric and a two-level persona column and the outcome."""
    rng = np.random.default_rng(seed)
    x, g = rng.normal(size=n), rng.choice(["a", "b"], size=n)
    return pd.DataFrame({"y": observe(latent(x, g, rng), kind), "x": x, "g": g})


def perfect(kind: str) -> FunctionSimulator:
    """A simulator drawing each answer from the humans' own process."""

    def answer(personas: pd.DataFrame, seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        x, g = personas["x"].to_numpy(), personas["g"].to_numpy()
        return pd.DataFrame(
            {"y": observe(latent(x, g, rng), kind)}, index=personas.index
        )

    return FunctionSimulator(answer)


def seconds(n: int, kind: str, *, reps: int, resamples: int, repeats: int) -> float:
    """The best of ``repeats`` wall-clock times of one validate call."""
    human, simulator = humans(n, kind), perfect(kind)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        validate(
            FORMULA, human, simulator, reps=reps, resamples=resamples, seed=1,
            progress=False,
        )  # fmt: skip
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1_000], help="humans")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="timings per call")
    args = parser.parse_args()
    seconds(200, "continuous", reps=2, resamples=10, repeats=1)  # warm-up
    print(
        f"{'rows':>7} {'reps':>5} {'resamples':>10} {'binary s':>9} "
        f"{'continuous s':>13} {'ratio':>6}"
    )
    for n in args.n:
        for resamples in (200, 0):
            binary, continuous = (
                seconds(
                    n, kind, reps=args.reps, resamples=resamples, repeats=args.repeats
                )
                for kind in ("binary", "continuous")
            )
            print(
                f"{n:>7} {args.reps:>5} {resamples:>10} {binary:>9.3f} "
                f"{continuous:>13.3f} {continuous / binary:>6.2f}"
            )


if __name__ == "__main__":
    main()
