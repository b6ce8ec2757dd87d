"""plan(): how many humans and simulated respondents a study needs, from a pilot.

A pilot ``rectify`` result carries, per term, the variance components of the rectified
estimate (``simval.ppi.Components``): the humans' own variance σ², the covariance c of
their influence with the simulator's, the latter's variance v and a simulated-only
row's variance ṽ. With n humans, N simulated-only respondents and the best λ in [0, 1]
the variance is [σ² − 2λc + λ²(v + (n/N) ṽ)] / n, so the effective sample size (the
humans whose own fit is as precise) is σ² over that. For standard PPI (v = ṽ) this
is Broska, Howes & van Loon's mixed-subjects formula n (n + N) / (n + (1 − ρ²) N);
tests/test_plan.py checks the plans against ppi-python's ``ppi_power``.

A human costs ``cost_human`` plus ``cost_simulated`` (the simulator answers for them
too), a simulated-only respondent ``cost_simulated``. For each term, ``plan`` finds
the cheapest (n, N) reaching a target effective sample size or CI half-width, or the
most precise one within a budget, and the cost of humans alone for the same precision.

``finetune_or_rectify`` answers the other planning question: given a number of humans,
should some of them fine-tune the simulator (LoRA) rather than be labeled data? It
runs each split and reports the rectified estimates' effective sample size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from simval.errors import OptionError, check_alpha, check_number, refuse
from simval.ppi import Components
from simval.rectify import COMPONENTS, ERRORS, Rectified, check_inputs, rectify
from simval.results import is_finding
from simval.study import Study

__all__ = ["Plan", "Tradeoff", "finetune_or_rectify", "plan"]

PLAN_COLUMNS = (
    "formula", "term", "ppi_correlation", "n_human", "n_simulated", "lam",
    "effective_n", "cost", "humans_only_n", "humans_only_cost", "saving",
    "safe_n_human", "safe_n_simulated", "safe_effective_n", "safe_cost",
)  # fmt: skip

ASSURANCE = 0.9
"""The default probability, over the pilot's sampling error, that the safe sizes
reach the target (``plan``)."""

MAX_HUMANS = 10_000_000
"""The largest human sample a plan considers (a target beyond it is refused)."""


@dataclass(frozen=True)
class Plan:
    """Per term, the cheapest (or, for a budget, the most precise) mix of humans and
    simulated respondents.

    ``table``: a row per (formula, term): the pilot's PPI correlation; the humans
    (``n_human``) and simulated-only respondents (``n_simulated``) to use, λ, the
    effective sample size they reach and their cost; the humans a humans-only study
    needs for the same precision and its cost; ``saving``, the share of that cost
    saved (negative never: with no gain the plan is humans only). These are at the
    pilot's estimates, which are themselves noisy: a study of that size reaches the
    target about half the time. ``safe_*``: the same at the conservative components
    (``_conservative``: the humans' variance at its upper and the PPI correlation at
    its lower confidence limit), the sizes that reach the target with probability
    ``assurance`` over the pilot's sampling error (for a budget, the effective n that
    the budget buys at that assurance). ``target``: what was asked, in words.
    """

    table: pd.DataFrame
    cost_human: float
    cost_simulated: float
    target: str
    assurance: float

    def sentence(self, formula: str, term: str) -> str:
        """The plan for one term in a sentence."""
        rows = self.table[
            (self.table["formula"] == formula) & (self.table["term"] == term)
        ]
        if rows.empty:
            raise OptionError(f"the plan has no term {term!r} of {formula!r}")
        row = rows.iloc[0]
        return (
            f"{term} in {formula}: {row['n_human']:.0f} humans plus "
            f"{row['n_simulated']:.0f} simulated respondents reach the precision of "
            f"{row['effective_n']:.0f} humans for {row['cost']:,.0f}, against "
            f"{row['humans_only_cost']:,.0f} for humans alone "
            f"({row['saving']:.0%} saved), at the pilot's estimates; with "
            f"{self.assurance:.0%} assurance over the pilot's error, "
            f"{row['safe_n_human']:.0f} humans plus {row['safe_n_simulated']:.0f} "
            f"simulated respondents ({row['safe_effective_n']:.0f} humans' precision, "
            f"{row['safe_cost']:,.0f})."
        )

    def to_text(self) -> str:
        """The plan as plain text (what ``simval plan`` prints): a ``sentence`` per
        term, intercepts aside."""
        rows = self.table[self.table["term"].map(is_finding).astype(bool)]
        return "\n".join(
            self.sentence(formula, term)
            for formula, term in zip(rows["formula"], rows["term"])
        )


def plan(
    pilot: Rectified,
    *,
    cost_human: float,
    cost_simulated: float,
    effective_n: float | None = None,
    half_width: float | None = None,
    budget: float | None = None,
    alpha: float | None = None,
    assurance: float = ASSURANCE,
) -> Plan:
    """Plan every term of ``pilot`` for one target: ``effective_n`` (humans-only
    equivalent), ``half_width`` (of the (1 − alpha) interval, in each term's units;
    ``alpha`` defaults to the pilot's) or ``budget`` (the most precise mix costing at
    most this). Exactly one target; costs are per respondent, in any one currency.
    Each term is planned at the pilot's estimates and at conservative ones, which
    reach the target with probability ``assurance`` over the pilot's error."""
    targets = {"effective_n": effective_n, "half_width": half_width, "budget": budget}
    given = {k: v for k, v in targets.items() if v is not None}
    if len(given) != 1:
        raise OptionError(
            "give exactly one target: effective_n, half_width or budget "
            f"(got {', '.join(given) or 'none'})"
        )
    ((name, value),) = given.items()
    costs = (("cost_human", cost_human), ("cost_simulated", cost_simulated))
    for label, number in (*given.items(), *costs):
        check_number(label, number, above=0)
    alpha = check_alpha(pilot.alpha if alpha is None else alpha)
    if isinstance(assurance, bool) or not (
        isinstance(assurance, int | float) and 0.5 <= assurance < 1
    ):
        raise refuse("assurance", assurance, "a number in [0.5, 1)")
    if pilot.components.empty:
        raise OptionError("the pilot has no estimable term to plan for")
    z = scipy.stats.norm.ppf(1 - alpha / 2)
    costs = (cost_human, cost_simulated)
    rows = []
    for part in pilot.components.to_dict("records"):
        n, N, goal, reached = _mix(part, name=name, value=value, z=z, costs=costs)
        safe = _conservative(part, assurance=assurance)
        safe_n, safe_N, _, safe_reached = _mix(
            safe, name=name, value=value, z=z, costs=costs
        )
        cost = _cost(n, N, costs=costs)
        humans_only = math.ceil(goal - 1e-9)  # the humans alone as precise as asked
        rows.append(
            {
                "formula": part["formula"], "term": part["term"],
                "ppi_correlation": part["ppi_correlation"], "n_human": n,
                "n_simulated": N, "lam": _best_lam(part, n=n, N=N),
                "effective_n": reached, "cost": cost, "humans_only_n": humans_only,
                "humans_only_cost": humans_only * cost_human,
                "saving": 1 - cost / (humans_only * cost_human),
                "safe_n_human": safe_n, "safe_n_simulated": safe_N,
                "safe_effective_n": safe_reached,
                "safe_cost": _cost(safe_n, safe_N, costs=costs),
            }
        )  # fmt: skip
    return Plan(
        table=pd.DataFrame(rows, columns=list(PLAN_COLUMNS)),
        cost_human=float(cost_human),
        cost_simulated=float(cost_simulated),
        target=f"{name}={value:g}",
        assurance=float(assurance),
    )


def _mix(
    part: dict, *, name: str, value: float, z: float, costs: tuple[float, float]
) -> tuple[int, int, float, float]:
    """One term's (n, N) for the target, the effective n it asks for (in the
    components' own σ²: a half-width's) and the effective n the mix reaches."""
    if name == "budget":
        n, N = _most_precise(part, budget=value, costs=costs)
        goal = _reached(part, n=n, N=N)
    else:
        goal = value if name == "effective_n" else part["human"] * (z / value) ** 2
        n, N = _cheapest(part, target=goal, costs=costs)
    return n, N, goal, _reached(part, n=n, N=N)


def _conservative(part: dict, *, assurance: float) -> dict:
    """The components at their pessimistic confidence limits, each one-sided at
    1 − (1 − assurance)/2 so that both hold together with probability ``assurance``
    (Bonferroni): σ² at its upper limit and the PPI correlation at its lower one, on
    the log and Fisher-z scales with the pilot's own standard errors
    (``human_error``, ``correlation_error``: from the influences' fourth moments; where
    a pilot lacks them, normal theory's √(2/(n − 1)) and 1/√(n − 3), n its humans).
    v and ṽ stay as estimated; c = ρ √(σ² v)."""
    n = part["n_human"]
    human_error = part.get("human_error", math.nan)
    correlation_error = part.get("correlation_error", math.nan)
    if not math.isfinite(human_error):
        human_error = math.sqrt(2 / max(n - 1, 1))
    if not math.isfinite(correlation_error):
        correlation_error = 1 / math.sqrt(max(n - 3, 1))
    quantile = scipy.stats.norm.ppf(1 - (1 - assurance) / 2)
    sigma_sq = part["human"] * math.exp(quantile * human_error)
    rho = part["ppi_correlation"]
    if not rho > 0:  # no gain at the estimate: none at the limit either
        return {**part, "human": sigma_sq}
    fisher = math.atanh(min(rho, 1 - 1e-12)) - quantile * correlation_error
    low = max(math.tanh(fisher), 0.0)
    cross = low * math.sqrt(sigma_sq * part["predicted"])
    return {**part, "human": sigma_sq, "cross": cross, "ppi_correlation": low}


# --- the variance of a mix, and the mixes that reach a target ------------------------------


def _best_lam(part: dict, *, n: float, N: float) -> float:
    """The λ in [0, 1] with the smallest variance: c / (v + (n/N) ṽ), clipped."""
    if not N or not part["cross"] > 0:  # no gain (or no estimate of it)
        return 0.0
    spread = part["predicted"] + n / N * part["unlabeled"]
    return float(np.clip(part["cross"] / spread, 0, 1)) if spread > 0 else 1.0


def _cost(n: float, N: float, *, costs: tuple[float, float]) -> float:
    """n humans (each answered by the simulator too, where N > 0) and N simulated."""
    human, simulated = costs
    return n * human + ((n + N) * simulated if N else 0.0)


def _needed(part: dict, *, n: np.ndarray, target: float) -> np.ndarray:
    """For each human count n, the fewest simulated-only rows that bring the
    effective sample size to ``target`` (0 where n alone does, inf where no N does)."""
    sigma_sq, c = part["human"], part["cross"]
    v, v_unlabeled = part["predicted"], part["unlabeled"]
    shortfall = sigma_sq * (1 - n / target)  # the variance the rectifier must remove
    N = np.full(len(n), np.inf)
    N[shortfall <= 0] = 0
    short = shortfall > 0
    if not c > 0:
        return N
    with np.errstate(divide="ignore", invalid="ignore"):
        # best λ = c / S with S = v + (n/N) ṽ removes c²/S: S ≤ c²/shortfall
        room = c**2 / shortfall - v
        free = shortfall / c <= 1  # λ = shortfall / c at the boundary, within [0, 1]
        # else λ = 1 removes 2c − S: S ≤ 2c − shortfall
        room = np.where(free, room, 2 * c - shortfall - v)
        rows = np.where(room > 0, n * v_unlabeled / room, np.inf)
    N[short] = np.ceil(np.maximum(rows[short], 1))
    return N


def _cheapest(
    part: dict, *, target: float, costs: tuple[float, float]
) -> tuple[int, int]:
    """The cheapest (n, N) whose effective sample size reaches ``target``."""
    if target > MAX_HUMANS:
        raise OptionError(
            f"the target needs over {MAX_HUMANS:,} humans' precision for "
            f"{part['term']!r}; ask for less"
        )
    n = np.arange(2, max(math.ceil(target), 2) + 1, dtype=float)
    N = _needed(part, n=n, target=target)
    human, simulated = costs
    cost = n * human + np.where(N > 0, (n + N) * simulated, 0.0)
    best = int(np.argmin(np.where(np.isfinite(cost), cost, np.inf)))
    return int(n[best]), int(N[best])


def _most_precise(
    part: dict, *, budget: float, costs: tuple[float, float]
) -> tuple[int, int]:
    """The (n, N) costing at most ``budget`` with the largest effective sample size:
    each n with all the simulated-only rows the rest buys, or humans alone."""
    human, simulated = costs
    most = math.floor(budget / human)
    if most < 2:
        raise OptionError(
            f"budget={budget:g} buys fewer than 2 humans at {human:g} each"
        )
    n = np.arange(2, min(most, MAX_HUMANS) + 1, dtype=float)
    N = np.floor(np.maximum(budget - n * (human + simulated), 0) / simulated)
    reached = np.array([_reached(part, n=a, N=b) for a, b in zip(n, N)])
    best = int(np.argmax(reached))
    if reached[best] > most:
        return int(n[best]), int(N[best])
    return most, 0


def _reached(part: dict, *, n: float, N: float) -> float:
    """The effective sample size of n humans and N simulated-only rows at the best λ."""
    components = Components(
        **{k: part.get(k, math.nan) for k in (*COMPONENTS, *ERRORS)}
    )
    variance = components.variance(lam=_best_lam(part, n=n, N=N), n=n, N=N)
    return part["human"] / variance  # σ²/m is the variance of m humans alone


# --- spend humans on fine-tuning or on rectification? ----------------------------------------

TRADEOFF_COLUMNS = (
    "fraction", "n_finetune", "n_labeled", "formula", "term", "lam", "ppi_correlation",
    "rectified_std_error", "effective_n", "gain_on_budget",
)  # fmt: skip


@dataclass(frozen=True)
class Tradeoff:
    """What each split of a fixed number of humans between a LoRA fine-tuning pilot and
    labeled data buys for the rectified estimates.

    ``table``: a row per (fraction, formula, term): the humans fine-tuned on and
    labeled, λ, the PPI correlation, the rectified standard error, its effective sample
    size (the humans whose own fit is as precise) and that per human of the budget
    (``gain_on_budget``; 1: as good as labeling them all and using no simulator).
    ``humans``: the budget. Fraction 0 is the base model rectifying with every human.
    """

    table: pd.DataFrame
    humans: int
    model: str

    def figure(self, formula: str):
        """A bar per fraction and term: the effective sample size, the budget dashed."""
        from simval.report import plots

        rows = self.table[
            (self.table["formula"] == formula)
            & self.table["term"].map(is_finding).astype(bool)
        ]
        if rows.empty:
            raise OptionError(f"the trade-off has no terms of {formula!r}")
        terms = list(dict.fromkeys(rows["term"]))
        series = {
            f"fine-tune {fraction:.0%} ({int(part['n_finetune'].iloc[0])} humans)": (
                part.set_index("term").loc[terms, "effective_n"].tolist()
            )
            for fraction, part in rows.groupby("fraction", sort=True)
        }
        return plots.grouped_bars(
            terms, series, colors=plots.colors_for(list(series)),
            ylabel="effective sample size (humans)",
            title=f"{formula}: {self.humans} humans split between fine-tuning and "
            "labeled data (dashed: all of them labeled, no simulator)",
            refline=self.humans,
        )  # fmt: skip

    def to_text(self) -> str:
        """The table as plain text (what ``simval plan --fractions`` prints): per
        fraction and term (intercepts aside), the humans fine-tuned on and labeled and
        the effective sample size."""
        shown = self.table[self.table["term"].map(is_finding).astype(bool)]
        columns = ["fraction", "n_finetune", "n_labeled", "formula", "term"]
        return shown[[*columns, "effective_n"]].to_string(index=False)


def finetune_or_rectify(
    study: Study,
    human_df: pd.DataFrame,
    *,
    unlabeled: int | pd.DataFrame,
    adapters_dir: str | Path,
    model: str = "default",
    fractions: Sequence[float] = (0.0, 0.25, 0.5),
    alpha: float = 0.05,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool | None = None,
    **training: Any,
) -> Tradeoff:
    """For the humans in ``human_df`` as the whole budget: each fraction f fine-tunes
    LoRA on a random f of them (its own pilot, the adapter written under
    ``adapters_dir``) and rectifies with the others as labeled data and ``unlabeled``
    as the simulated-only respondents; f = 0 rectifies with the base model and every
    human. ``training``: ``simval.finetune``'s keywords. One random split per
    fraction, so differences of a few percent are noise."""
    from simval.finetune import finetune, pilot
    from simval.simulators.hf import HFSimulator

    shares = [float(f) for f in fractions]
    if not shares or not all(0 <= f < 1 for f in shares):
        raise refuse("fractions", list(fractions), "numbers in [0, 1), at least one")
    check_inputs(study, human_df, unlabeled=unlabeled, alpha=alpha)
    rows = []
    for fraction in sorted(set(shares)):
        if fraction == 0:
            trained, labeled = human_df.iloc[:0], human_df
            simulator = HFSimulator(model, study=study, cache_dir=cache_dir)
        else:
            trained, labeled = pilot(human_df, frac=fraction, seed=seed)
            folder = finetune(
                model, trained, study, Path(adapters_dir) / f"finetune-{fraction:g}",
                seed=seed, cache_dir=cache_dir, progress=progress, **training,
            )  # fmt: skip
            simulator = HFSimulator(
                model, study=study, adapter=folder, cache_dir=cache_dir
            )
        result = rectify(
            study, labeled, simulator, unlabeled=unlabeled, alpha=alpha, seed=seed,
            progress=progress,
        )  # fmt: skip
        table = result.table.assign(
            fraction=fraction, n_finetune=len(trained), n_labeled=len(labeled),
            gain_on_budget=result.table["effective_n"] / len(human_df),
        )  # fmt: skip
        rows.append(table[list(TRADEOFF_COLUMNS)])
    return Tradeoff(
        table=pd.concat(rows, ignore_index=True), humans=len(human_df), model=str(model)
    )
