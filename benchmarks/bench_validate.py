"""How validate's cost grows with rows and replicates, against a plain statsmodels loop.

The baseline does the same statistical work a researcher would write by hand:
for each replicate, resample the rows with replacement and fit the formula with
``statsmodels.formula.api`` and HC1 errors. validate does that too, through its own
design reuse, plus every metric (JSD, variance ratios, heterogeneity, coherence,
coefficient recovery). Printed: seconds for each and their ratio, from one run.

The second table is the demo's shape: the disclosure task's two models (a logit and
an OLS) on its two items, three subgroup columns, 10 replicates and 200 bootstrap
resamples, for three cheap simulators (so the cost is validate's own). Its baseline
refits both formulas with statsmodels on every replicate, overall and in every
subgroup cell, as validate does; validate also runs the fresh-sample reference and
every metric. Three ``validate`` calls are timed, and one ``validate_each`` call,
which computes the simulator-independent work once.

    .venv/bin/python benchmarks/bench_validate.py            # 1k, 10k, 100k rows
    .venv/bin/python benchmarks/bench_validate.py --quick    # 1k, 10k rows
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
import statsmodels.formula.api as smf

from simval import BootstrapSimulator, MarginalSimulator, Study, validate
from simval.tasks import load_task
from simval.validate import validate_each

FORMULA = "y ~ C(arm) + x + C(group)"
DEMO_ITEMS = ("concern", "share_location")


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
    validate(
        FORMULA, human, BootstrapSimulator(human), reps=reps, seed=seed, progress=False
    )
    return time.perf_counter() - start


def demo_study() -> tuple[Study, pd.DataFrame]:
    """The disclosure task restricted to the items its formulas use, and its humans."""
    task = load_task("disclosure")
    items = tuple(i for i in task.study.items if i.name in DEMO_ITEMS)
    return dataclasses.replace(task.study, items=items), task.human


def demo_baseline(study: Study, human: pd.DataFrame, *, reps: int, seed: int) -> float:
    """Seconds to refit the study's formulas with statsmodels (HC1) on the humans and on
    ``reps`` resamples, overall and in every subgroup cell."""
    rng = np.random.default_rng(seed)
    samples = [human] + [
        human.iloc[rng.integers(len(human), size=len(human))] for _ in range(reps)
    ]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels on separated small cells
        for sample in samples:
            _fit_cells(study, sample)
    return time.perf_counter() - start


def _fit_cells(study: Study, sample: pd.DataFrame) -> None:
    """Fit every model of ``study`` on ``sample`` and on each of its subgroup cells."""
    cells = [sample] + [
        rows for column in study.subgroups for _, rows in sample.groupby(column)
    ]
    for rows in cells:
        for model in study.models:
            family = sm.families.Binomial() if model.family == "logit" else None
            fitted = (
                smf.glm(model.formula, rows, family=family)
                if family
                else smf.ols(model.formula, rows)
            )
            try:
                fitted.fit(cov_type="HC1")
            except (ValueError, np.linalg.LinAlgError):
                pass  # a cell validate reports as not estimable


def demo_seconds(
    study: Study, human: pd.DataFrame, *, reps: int, seed: int
) -> tuple[float, float]:
    """Seconds for three validate calls, and for one validate_each of the same three."""
    simulators = {
        "marginal": MarginalSimulator(human),
        "resampling": BootstrapSimulator(human),
        "stratified": BootstrapSimulator(human, strata=list(study.treatment)),
    }
    options = {"reps": reps, "resamples": 200, "seed": seed, "progress": False}
    start = time.perf_counter()
    for simulator in simulators.values():
        validate(study, human, simulator, **options)
    separate = time.perf_counter() - start
    start = time.perf_counter()
    validate_each(study, human, simulators, **options)
    return separate, time.perf_counter() - start


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
    study, everyone = demo_study()
    print(
        f"\n{'rows':>8} {'reps':>5} {'statsmodels s':>14} {'3x validate s':>14} "
        f"{'ratio':>7} {'validate_each s':>16} {'ratio':>7}"
    )
    for n in (400, 836):
        human = everyone.iloc[:n]
        base = 3 * demo_baseline(study, human, reps=10, seed=1)
        separate, shared = demo_seconds(study, human, reps=10, seed=1)
        print(
            f"{n:>8} {10:>5} {base:>14.3f} {separate:>14.3f} {separate / base:>7.2f} "
            f"{shared:>16.3f} {shared / base:>7.2f}"
        )


if __name__ == "__main__":
    main()
