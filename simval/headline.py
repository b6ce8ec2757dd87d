"""The headline metrics: each defined once, by the function that computes it from a draw.

A ``Metric`` names a headline number (its summary key, label, what "better" means,
where its reference comes from) and carries its definition: ``value``, a function of
one ``Draw``, the counting view of the human sample and the replicate samples that
``simval.resampling`` builds. That one function gives the metric's point value (the
data as drawn), its bootstrap draws (respondents resampled), its Monte Carlo standard
error (each replicate alone), its reference value (the fresh-sample reference's data
as drawn) and, for a metric judged against the humans' own level, that level (the
humans in the replicates' place). ``HEADLINE`` is the registry every reader iterates
(``Validation.summary``, ``summary_table``, ranking, the leaderboards, the command's
table, the report); ``registered`` adds metrics to it for the length of a ``with``.
Definitions: docs/metrics.md.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, Protocol, overload

import numpy as np
import pandas as pd

from simval.errors import OptionError, refuse
from simval.metrics import nan_mean

Direction = Literal["lowest", "highest", "near_one", "near_human", "near_nominal"]


class Draw(Protocol):
    """What a headline metric reads of one draw of the humans and the replicates
    (``resampling.Draw`` implements it). Arrays are replicates first; NaN where a side
    has no answer."""

    @property
    def recovery(self) -> pd.DataFrame | None:
        """The run's ``recovery`` rows over all respondents (the data as drawn only;
        None in a bootstrap draw): what the replicate metrics read."""

    def jsd(self) -> np.ndarray:
        """Jensen–Shannon distance, humans vs each replicate (replicates x items)."""

    def wasserstein(self) -> np.ndarray:
        """Earth mover's distance over the code range (replicates x items)."""

    def cell_jsd(self) -> np.ndarray:
        """``jsd`` within each subgroup cell large enough to judge (cells x replicates
        x items)."""

    def variance_ratios(self) -> np.ndarray:
        """Each replicate's answer variance over the humans' (replicates x items)."""

    def patterns(self) -> np.ndarray:
        """Distinct complete answer patterns and their Miller–Madow entropy in bits
        (replicates x 2)."""

    def incoherence(self) -> np.ndarray:
        """Each belief–action pair's incoherence rate (replicates x pairs)."""

    def missing(self) -> np.ndarray:
        """The share of missing answers (replicates)."""

    def humans(self) -> Draw:
        """The humans in the replicates' place (one replicate): their own level of the
        metrics read from a sample alone (patterns, incoherence, missing)."""


@dataclass(frozen=True)
class Metric:
    """A headline metric: its summary key, display label, what "better" means, its
    reference and its definition.

    ``value`` computes it from a ``Draw``. ``reference`` says where
    ``<name>_reference`` comes from: ``"fresh"``, ``value`` on the fresh-sample
    reference simulator's replicates of the same personas (its value under a perfect
    simulator, sampling noise included); ``"human"``, the humans' own level (``human``,
    its summary key: ``value`` of ``Draw.humans``), which a fresh sample of equal size
    matches in expectation. ``uncertainty``: ``"bootstrap"`` (respondents resampled)
    or ``"replicates"`` (Monte Carlo over the replicate samples: the run's
    ``replicate_metrics`` rows of this name). ``bounds``: the range its values (and so
    its intervals) lie in.
    """

    name: str
    label: str
    direction: Direction
    reference: Literal["fresh", "human"]
    uncertainty: Literal["bootstrap", "replicates"]
    value: Callable[[Draw], float]
    human: str | None = None
    bounds: tuple[float, float] = (0.0, 1.0)


# --- the definitions ----------------------------------------------------------------------


def mean_over_items(values: np.ndarray) -> float:
    """Mean over items (last axis) of each item's mean over replicates, NaN ignored at
    both steps."""
    with np.errstate(invalid="ignore"), _quiet():
        return float(np.nanmean(np.nanmean(values, axis=0)))


def _jsd(draw: Draw) -> float:
    return mean_over_items(draw.jsd())


def _wasserstein(draw: Draw) -> float:
    return mean_over_items(draw.wasserstein())


def _subgroup_jsd_gap(draw: Draw) -> float:
    """Worst minus best mean JSD over the subgroup cells large enough to judge."""
    per_cell = np.array([mean_over_items(c) for c in draw.cell_jsd()], dtype=float)
    per_cell = per_cell[~np.isnan(per_cell)]
    return float(per_cell.max() - per_cell.min()) if len(per_cell) else np.nan


def _variance_ratio(draw: Draw) -> float:
    """Geometric mean over items of each item's geometric-mean ratio over replicates."""
    ratios = draw.variance_ratios()
    with np.errstate(divide="ignore", invalid="ignore"), _quiet():
        logs = np.log(np.where(np.isfinite(ratios) & (ratios > 0), ratios, np.nan))
        return float(np.exp(np.nanmean(np.nanmean(logs, axis=0))))


def _pattern_mean(column: int) -> Callable[[Draw], float]:
    """The mean over replicates of distinct patterns (0) or pattern entropy (1)."""

    def value(draw: Draw) -> float:
        with _quiet():  # NaN where no replicate has a complete belief pattern
            return float(np.nanmean(draw.patterns()[:, column]))

    return value


def _incoherence(draw: Draw) -> float:
    """Mean over belief–action pairs of each pair's mean rate over the replicates."""
    rates = draw.incoherence()
    if not rates.size:
        return np.nan
    with np.errstate(invalid="ignore"), _quiet():
        return float(np.nanmean(np.nanmean(rates, axis=0)))


def _nonresponse(draw: Draw) -> float:
    return float(np.mean(draw.missing()))


def _recovered(column: str) -> Callable[[Draw], float]:
    """The mean over formulas of a coefficient score of the ``recovery`` table."""

    def value(draw: Draw) -> float:
        return math.nan if draw.recovery is None else nan_mean(draw.recovery[column])

    return value


BUILT_IN: tuple[Metric, ...] = (
    Metric("jsd", "JSD", "lowest", "fresh", "bootstrap", _jsd),
    Metric("wasserstein", "ordinal distance", "lowest", "fresh", "bootstrap", _wasserstein),
    Metric(
        "subgroup_jsd_gap", "subgroup JSD gap", "lowest", "fresh", "bootstrap",
        _subgroup_jsd_gap,
    ),
    Metric(
        "variance_ratio", "variance ratio", "near_one", "fresh", "bootstrap",
        _variance_ratio, bounds=(0.0, math.inf),
    ),
    Metric(
        "unique_patterns", "distinct patterns", "near_human", "human", "bootstrap",
        _pattern_mean(0), human="unique_patterns_human", bounds=(0.0, math.inf),
    ),
    Metric(
        "entropy", "pattern entropy", "near_human", "human", "bootstrap",
        _pattern_mean(1), human="entropy_human", bounds=(0.0, math.inf),
    ),
    Metric(
        "incoherence", "incoherence", "near_human", "human", "bootstrap",
        _incoherence, human="incoherence_human",
    ),
    Metric("nonresponse", "nonresponse", "lowest", "fresh", "bootstrap", _nonresponse),
    Metric(
        "sign_f1", "sign-F1", "highest", "fresh", "replicates", _recovered("sign_f1")
    ),
    Metric(
        "false_positive_rate", "false-positive rate", "lowest", "fresh", "replicates",
        _recovered("false_positive_rate"),
    ),
    Metric(
        "coverage", "difference-CI coverage", "near_nominal", "fresh", "replicates",
        _recovered("coverage"),
    ),
)  # fmt: skip
"""The built-in headline metrics, in display order (definitions: docs/metrics.md)."""


# --- the registry -------------------------------------------------------------------------


class Registry(Sequence[Metric]):
    """The headline metrics in display order: the built-in ones, then those added by
    ``registered`` (for the length of its ``with``). Every reader iterates this one
    object, so a metric registered once shows everywhere."""

    def __init__(self, metrics: Sequence[Metric]) -> None:
        self._metrics = list(metrics)

    @overload
    def __getitem__(self, index: int) -> Metric: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Metric]: ...
    def __getitem__(self, index: int | slice) -> Metric | Sequence[Metric]:
        return self._metrics[index]

    def __len__(self) -> int:
        return len(self._metrics)

    def __repr__(self) -> str:
        return f"Registry({', '.join(m.name for m in self._metrics)})"

    @contextmanager
    def registered(self, *metrics: Metric) -> Iterator[None]:
        """Add ``metrics`` after the others while the ``with`` lasts. A name must be new
        (a metric's or a human level's); an added metric is bootstrapped (the replicate
        metrics are the coefficient scores the run computes per replicate)."""
        taken = {*METRICS, *HUMAN_LEVELS}
        for metric in metrics:
            if not isinstance(metric, Metric):
                raise OptionError(
                    f"{metric!r} is a {type(metric).__name__}, not a Metric"
                )
            if metric.name in taken or (metric.human and metric.human in taken):
                raise OptionError(f"a headline metric is already named {metric.name!r}")
            if metric.uncertainty != "bootstrap":
                raise refuse("uncertainty", metric.uncertainty, "'bootstrap'")
            taken |= {metric.name, metric.human} - {None}
        self._metrics.extend(metrics)
        try:
            yield
        finally:
            for metric in metrics:
                self._metrics.remove(metric)


class _ByName(Mapping[str, Metric]):
    """The registry's metrics by name (a live view)."""

    def __getitem__(self, name: str) -> Metric:
        for metric in HEADLINE:
            if metric.name == name:
                return metric
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (metric.name for metric in HEADLINE)

    def __len__(self) -> int:
        return len(HEADLINE)


class _HumanLevels(Sequence[str]):
    """The summary keys of the humans' own levels, in registry order (a live view)."""

    def _keys(self) -> list[str]:
        return [m.human for m in HEADLINE if m.human]

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._keys()[index]

    def __len__(self) -> int:
        return len(self._keys())


HEADLINE = Registry(BUILT_IN)
"""Every headline metric, in display order."""

METRICS: Mapping[str, Metric] = _ByName()
"""The headline metrics by name."""

HUMAN_LEVELS: Sequence[str] = _HumanLevels()
"""Summary keys of the levels the humans show themselves (patterns, entropy, incoherence)."""

registered = HEADLINE.registered


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's 'mean of empty slice' warnings (NaN is the intended answer)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
