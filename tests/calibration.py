"""How the verdict behaves on data with known effects: a calibration run.

Known data-generating processes (``STUDIES``: an ordinal outcome fitted by OLS and a
binary one by logit, each with two real effects; ordered logit and probit, a
multinomial logit, a weighted logit, and OLS and logit with four terms) and simulators
that draw from them perfectly or with a known departure: effects attenuated by half,
twice the noise variance, or half the personas left unanswered. ``calibration_run``
validates one simulator against many human data sets drawn from the process;
``calibration_table`` summarises the rates that docs/metrics.md documents and
tests/test_calibration.py checks with binomial tolerances. The resampling reference
(``BootstrapSimulator``) is included to show why it is no perfect simulator. The OLS
process is also the known study of tests/test_report.py and tests/test_bench_tasks.py.

It lives beside the tests, not in the installed package: only the tests and the
documented tables use it. ``python benchmarks/bench_calibration.py 200`` prints the table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import norm

from simval.results import (
    CONSISTENT,
    INCONSISTENT,
    UNDETERMINED,
    Validation,
    is_finding,
)
from simval.simulators.base import Seed, Simulator
from simval.simulators.reference import BootstrapSimulator, FunctionSimulator
from simval.study import Item, Model, Study
from simval.validate import validate_each

Family = Literal[
    "ols", "logit", "ologit", "oprobit", "mnlogit", "weighted logit", "ols4", "logit4"
]
Kind = Literal["perfect", "attenuated", "noisier", "half nonresponse", "resampling"]
KINDS: tuple[str, ...] = (
    "perfect",
    "attenuated",
    "noisier",
    "half nonresponse",
    "resampling",
)
DEPARTURES = {
    "perfect": {},
    "attenuated": {"effect": 0.5},
    "noisier": {"noise": math.sqrt(2)},
    "half nonresponse": {"answer_share": 0.5},
}
"""Each simulator's departure from the true process."""

STUDIES = {
    "ols": Study(
        items=(Item("y", "y", {str(c): c for c in range(9)}),),
        persona=("x", "g"),
        models=(Model("y ~ x + g"),),
    ),
    "logit": Study(
        items=(Item("y", "y", {"no": 0, "yes": 1}),),
        persona=("x", "g"),
        models=(Model("y ~ x + g", family="logit"),),
    ),
    "ologit": Study(
        items=(Item("y", "y", {str(c): c for c in range(1, 5)}),),
        persona=("x", "g"),
        models=(Model("y ~ x + g", family="ologit"),),
    ),
    "oprobit": Study(
        items=(Item("y", "y", {str(c): c for c in range(1, 5)}),),
        persona=("x", "g"),
        models=(Model("y ~ x + g", family="oprobit"),),
    ),
    "mnlogit": Study(
        items=(Item("y", "y", {"A": 1, "B": 2, "C": 3}),),
        persona=("x", "g"),
        models=(Model("y ~ x + g", family="mnlogit"),),
    ),
    "weighted logit": Study(
        items=(Item("y", "y", {"no": 0, "yes": 1}),),
        persona=("x", "g", "z"),
        models=(Model("y ~ x + g", family="logit", cov="HC0"),),
        weight="w",
    ),
    "ols4": Study(
        items=(Item("y", "y", {str(c): c for c in range(11)}),),
        persona=("x", "x2", "g", "z"),
        models=(Model("y ~ x + x2 + g + z"),),
    ),
    "logit4": Study(
        items=(Item("y", "y", {"no": 0, "yes": 1}),),
        persona=("x", "x2", "g", "z"),
        models=(Model("y ~ x + x2 + g + z", family="logit"),),
    ),
}
"""The known studies: y on a continuous x and a binary g (and, weighted, a z the
formula leaves out, over-sampled, with the survey weights that undo it); the
four-term studies add a continuous x2 correlated 0.3 with x and a rare dummy z
(one respondent in five), as real formulas have more and less balanced terms."""

RARE = 0.2
"""The four-term processes' share of z = 1."""

OVERSAMPLED = 0.8
"""The weighted process's sample share of z = 1 (half of the population)."""


def personas(n: int, *, seed: Seed, family: Family = "ols") -> pd.DataFrame:
    """n respondents: x standard normal, g a fair coin; for the weighted process also z,
    1 in ``OVERSAMPLED`` of the sample against half the population, and the survey
    weight w = population share / sample share of the respondent's z. The four-term
    processes add x2 (correlation 0.3 with x) and z, 1 in ``RARE`` of the sample."""
    rng = np.random.default_rng(seed)
    people = pd.DataFrame({"x": rng.normal(size=n), "g": rng.integers(0, 2, size=n)})
    if family in ("ols4", "logit4"):
        x2 = 0.3 * people["x"] + math.sqrt(1 - 0.3**2) * rng.normal(size=n)
        return people.assign(x2=x2, z=(rng.random(n) < RARE).astype(int))
    if family != "weighted logit":
        return people
    z = (rng.random(n) < OVERSAMPLED).astype(int)
    return people.assign(
        z=z, w=np.where(z == 1, 0.5 / OVERSAMPLED, 0.5 / (1 - OVERSAMPLED))
    )


def answers(
    people: pd.DataFrame,
    *,
    family: Family,
    seed: Seed,
    effect: float = 1.0,
    noise: float = 1.0,
) -> pd.Series:
    """The true process, effects scaled by ``effect`` and noise SD by ``noise``.

    OLS: y = round(4 + 0.5 x - 0.8 g + noise * e), clipped to 0..8, e standard normal.
    Logit: P(y = 1) = logistic(-0.3 + 0.8 x - 0.7 g).
    Ordered logit: y = 1..4 cut from 0.8 x - 0.7 g + noise * e at -1, 0 and 1, e
    standard logistic; ordered probit the same with e standard normal. Multinomial logit:
    y = A, B or C with utilities 0, -0.2 + 0.8 x - 0.5 g and 0.3 - 0.6 x + 0.7 g plus
    standard Gumbel noise (``noise`` scales the utilities' noise). Weighted logit: P(y = 1) = logistic(-0.3 + (0.3 + z) x - 0.7 g),
    the effect of x four times as large where z = 1, so the unweighted sample's logit
    slope (z over-sampled) differs from the population's, which the weights recover.
    Four terms, OLS: y = round(5 + 0.8 x + 0.4 x2 + 0.6 g - 0.6 z + 2 noise * e),
    clipped to 0..10; logit: P(y = 1) = logistic(-0.3 + 0.8 x + 0.4 x2 - 0.7 g + 0.5 z).
    """
    rng = np.random.default_rng(seed)
    # plain arrays: a calibration run draws thousands of answer sets
    x, g = people["x"].to_numpy(), people["g"].to_numpy()
    if family in ("ols4", "logit4"):
        return _four_terms(people, family=family, rng=rng, effect=effect, noise=noise)
    if family == "ols":
        latent = 4 + effect * (0.5 * x - 0.8 * g)
        latent = latent + noise * rng.normal(size=len(people))
        return pd.Series(np.clip(np.round(latent), 0, 8), index=people.index)
    if family in ("ologit", "oprobit"):
        draw = rng.logistic if family == "ologit" else rng.normal
        latent = effect * (0.8 * x - 0.7 * g) + noise * draw(size=len(people))
        return pd.Series(np.digitize(latent, [-1.0, 0.0, 1.0]) + 1, index=people.index)
    if family == "mnlogit":
        utility = np.column_stack(
            [
                np.zeros(len(x)),
                -0.2 + effect * (0.8 * x - 0.5 * g),
                0.3 + effect * (-0.6 * x + 0.7 * g),
            ]
        )
        utility = utility + noise * rng.gumbel(size=utility.shape)
        return pd.Series(utility.argmax(axis=1) + 1, index=people.index)
    slope = 0.8 if family == "logit" else 0.3 + people["z"].to_numpy()
    chance = 1 / (1 + np.exp(-(-0.3 + effect * (slope * x - 0.7 * g))))
    return pd.Series((rng.random(len(people)) < chance).astype(int), index=people.index)


def _four_terms(
    people: pd.DataFrame,
    *,
    family: Family,
    rng: np.random.Generator,
    effect: float,
    noise: float,
) -> pd.Series:
    """The four-term processes' answers (see ``answers``)."""
    x, x2, g, z = (people[c].to_numpy() for c in ("x", "x2", "g", "z"))
    if family == "ols4":
        latent = 5 + effect * (0.8 * x + 0.4 * x2 + 0.6 * g - 0.6 * z)
        latent = latent + 2 * noise * rng.normal(size=len(people))
        return pd.Series(np.clip(np.round(latent), 0, 10), index=people.index)
    eta = -0.3 + effect * (0.8 * x + 0.4 * x2 - 0.7 * g + 0.5 * z)
    chance = 1 / (1 + np.exp(-eta))
    return pd.Series((rng.random(len(people)) < chance).astype(int), index=people.index)


def human_data(n: int, *, family: Family, seed: int) -> pd.DataFrame:
    """One human data set of n respondents from the true process."""
    people = personas(n, seed=seed, family=family)
    return people.assign(y=answers(people, family=family, seed=10_000 + seed))


def known_simulator(
    *,
    family: Family,
    effect: float = 1.0,
    noise: float = 1.0,
    answer_share: float = 1.0,
) -> FunctionSimulator:
    """A simulator answering from the process (perfect with the defaults), leaving a
    random ``1 - answer_share`` of the personas unanswered."""

    def simulate(people: pd.DataFrame, seed: Seed) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        y = answers(people, family=family, seed=rng, effect=effect, noise=noise)
        y = y.where(rng.random(len(people)) < answer_share)
        return pd.DataFrame({"y": y}, index=people.index)

    simulate.__name__ = (
        f"known_{family}(effect={effect:g}, noise={noise:g}, answered={answer_share:g})"
    )
    return FunctionSimulator(simulate)


def calibration_run(
    kind: Kind,
    *,
    family: Family,
    n: int,
    datasets: int,
    reps: int = 4,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Validate the ``kind`` simulator against ``datasets`` human data sets of n.

    One row per data set: the verdict row, the mean difference-CI coverage over the
    terms and replicates, and whether replicate 0's CI for x covers (independent
    across data sets, so its share has a binomial error).
    """
    return calibration_runs(
        {kind: datasets}, family=family, n=n, reps=reps, alpha=alpha
    )[kind]


def calibration_runs(
    datasets: Mapping[str, int],
    *,
    family: Family,
    n: int,
    reps: int = 4,
    alpha: float = 0.05,
) -> dict[str, pd.DataFrame]:
    """``calibration_run`` of each simulator kind, against ``datasets[kind]`` data sets.

    Data set ``s`` is the same for every kind (its seed), so the kinds' rates are
    paired, and each data set's simulators are validated together
    (``validate_each``): the human fits and the fresh-sample reference's run are
    computed once. Each frame equals the kind's own ``calibration_run``.
    """
    rows: dict[str, list[dict]] = {kind: [] for kind in datasets}
    for seed in range(max(datasets.values(), default=0)):
        people = human_data(n, family=family, seed=seed)
        simulators = {
            kind: _simulator(kind, family=family, people=people)
            for kind, count in datasets.items()
            if seed < count
        }
        results = validate_each(
            STUDIES[family], people, simulators, reps=reps, resamples=0, seed=seed,
            alpha=alpha, progress=False,
        )  # fmt: skip
        for kind, result in results.items():
            rows[kind].append(_row(result, alpha=alpha))
    return {kind: pd.DataFrame(found) for kind, found in rows.items()}


def _simulator(kind: str, *, family: Family, people: pd.DataFrame) -> Simulator:
    """The ``kind`` simulator for one human data set."""
    if kind == "resampling":
        return BootstrapSimulator(people)
    return known_simulator(family=family, **DEPARTURES[kind])


def _row(result: Validation, *, alpha: float) -> dict:
    """A data set's row: the verdict, the mean coverage, replicate 0's coverage of x
    (of x's first equation, ``x | y=B``, in the multinomial logit)."""
    terms = result.coefficients[result.coefficients["term"].map(is_finding)]
    slope = next(t for t in terms["term"] if t.split(" |")[0] == "x")
    return {
        **result.verdicts.iloc[0].to_dict(),
        "coverage": float(terms["coverage"].mean()),
        "x_covered_rep0": _first_replicate_covers(result, term=slope, alpha=alpha),
    }


def _first_replicate_covers(result, *, term: str, alpha: float) -> bool:
    """Whether replicate 0's difference CI for ``term`` contains 0."""
    reps = result.replicate_coefficients
    rep = reps[(reps["rep"] == 0) & (reps["term"] == term)]
    if rep.empty:
        return False
    human = result.coefficients[result.coefficients["term"] == term].iloc[0]
    spread = math.hypot(human["human_std_error"], rep["std_error"].iloc[0])
    gap = abs(rep["estimate"].iloc[0] - human["human_estimate"])
    return bool(gap <= norm.ppf(1 - alpha / 2) * spread)


def calibration_table(
    *,
    kinds: Sequence[str] = KINDS,
    settings: Sequence[tuple[str, int]] = (("ols", 200), ("logit", 300)),
    datasets: int = 300,
    reps: int = 4,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Rates per (family, n, simulator): Wald rejection, coverage, each decision, the
    share of data sets where ``consistent`` was attainable and the median equivalence
    bound (what the data show: every coefficient within it, in standardised units)."""
    rows = []
    for family, n in settings:
        # extra latent noise in a logit is attenuation, shown above
        chosen = [k for k in kinds if not (k == "noisier" and family == "logit")]
        frames = calibration_runs(
            dict.fromkeys(chosen, datasets), family=family, n=n, reps=reps, alpha=alpha
        )
        for kind, frame in frames.items():
            rows.append(
                {
                    "family": family,
                    "n": n,
                    "simulator": kind,
                    "datasets": datasets,
                    "wald_rejection": float((frame["wald_p_value"] < alpha).mean()),
                    "coverage": float(frame["coverage"].mean()),
                    **{
                        d: float((frame["decision"] == d).mean())
                        for d in (CONSISTENT, INCONSISTENT, UNDETERMINED)
                    },
                    "attainable": float(frame["consistent_attainable"].mean()),
                    "median_bound": float(frame["equivalence_bound"].median()),
                }
            )
    return pd.DataFrame(rows)


DECISION_RATE_SETTINGS = tuple(
    (family, n) for family in ("ols4", "logit4") for n in (150, 300, 1000, 3000)
)
"""The decision-rate table of docs/metrics.md: four terms, from 150 to 3,000 humans."""
