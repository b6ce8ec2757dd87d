"""Confidence intervals for the headline metrics by resampling respondents.

The human sample and each replicate sample are coded once as integer arrays (the
option each respondent chose per item, its JSD outcome, its answer pattern, its
subgroup levels, its incoherence flags); each bootstrap draw then resamples rows of
those arrays and recomputes every distribution-based headline metric with counting
alone, so a few hundred draws cost a second and no simulator is asked again. A
sample's answers are counted over the levels it gives, so a continuous item costs its
sample's distinct answers, not all samples' (benchmarks/bench_continuous.py). Under
survey weights a human row counts by its weight (scaled to mean 1), as in the tables;
replicate rows count once. A draw is a ``Draw``, which every metric of the registry
(``simval.headline``) reads through its ``value``: on the data as drawn that gives the
metric's value, on the fresh reference's data its reference, on resampled rows its
bootstrap draws; a test checks that the data as drawn reproduce the tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.stats
from scipy.spatial.distance import jensenshannon

from simval.binding import Binding, overall_rows
from simval.headline import HEADLINE, HUMAN_LEVELS, METRICS
from simval.metrics import NumberScale, incoherence_flags_each
from simval.progress import progress as progress_bar
from simval.simulators.base import Simulator, check_output
from simval.study import Coherence, Item, Study


@dataclass(frozen=True)
class Coded:
    """One sample as arrays: ``answers`` (n x items, position among the item's levels
    that this sample gives, ascending, -1 missing), ``codes`` (items x those levels'
    codes, zero padded), ``outcomes`` (n x items, the answer's JSD outcome: its bin for
    a binned number item, else its position among every sample's levels),
    ``patterns`` (n, pattern id, -1 incomplete), ``levels`` (n x cells, True where the
    row belongs to that subgroup cell), ``incoherent`` (n x pairs, 1/0/NaN),
    ``weights`` (n, each row's count: its survey weight scaled to mean 1; None: each
    row counts once, the fast path every unweighted sample takes)."""

    answers: np.ndarray
    codes: np.ndarray
    outcomes: np.ndarray
    patterns: np.ndarray
    levels: np.ndarray
    incoherent: np.ndarray
    weights: np.ndarray | None


@dataclass(frozen=True)
class Coding:
    """The human sample and the replicates coded alike, with what the metrics need.

    A sample's level counts are over its own levels, so a continuous item costs its
    sample's distinct answers, not every sample's; each replicate's earth mover's
    distance reads the humans' and its counts on their joint levels: ``human_into`` and
    ``replicate_into`` (replicates x items * own levels) are where each count goes in
    a replicates x items x joint levels array (a last, zero-gap column takes padding),
    ``gaps`` the distance between consecutive joint levels."""

    human: Coded
    replicates: tuple[Coded, ...]
    human_into: np.ndarray
    replicate_into: np.ndarray
    gaps: np.ndarray  # replicates x items x joint levels
    n_outcomes: int  # JSD outcomes per item (the widest item's)
    judged_cells: np.ndarray  # indices of subgroup cells large enough for the gap
    spans: np.ndarray  # items: what the earth mover's distance divides by


def code_samples(
    study: Study,
    human: pd.DataFrame,
    samples: Sequence[pd.DataFrame],
    *,
    cells: Sequence[tuple[str, object]],
    judged: Sequence[bool],
    pattern_items: Sequence[str],
    pairs: Sequence[Coherence],
    human_weights: np.ndarray | None = None,
    scales: Mapping[str, NumberScale] | None = None,
) -> Coding:
    """Code the human data and the replicates; ``cells`` are (subgroup column, level),
    ``human_weights`` the humans' survey weights (None: unweighted), ``scales`` each
    number item's ``NumberScale`` (its levels are the distinct answers of all samples)."""
    frames = [human, *samples]
    scales = scales or {}
    levels = [
        _levels(item, frames, numbered=item.name in scales) for item in study.items
    ]
    width = max(1, *(len(v) for v in levels))
    codes = np.full((len(study.items), width), np.nan)
    for i, values in enumerate(levels):
        codes[i, : len(values)] = np.sort(values)
    answers = [_answers(study, frame, codes) for frame in frames]
    binning = _outcomes(study, codes, scales)
    columns = [study.item_names.index(name) for name in pattern_items]
    patterns = _pattern_ids([a[:, columns] for a in answers])
    flags = [incoherence_flags_each(frames, pair) for pair in pairs]
    weights: list[np.ndarray | None] = [None] * len(frames)
    if human_weights is not None:
        weights[0] = human_weights * (len(human_weights) / human_weights.sum())
    given = [_given(a) for a in answers]
    own = max(1, *(len(g) for sample in given for g in sample))
    coded = [
        Coded(
            answers=_compact(a, g),
            codes=_own_codes(codes, g, width=own),
            outcomes=a if binning is None else _binned(a, binning),
            patterns=p,
            levels=np.column_stack(
                [frame[column].to_numpy() == level for column, level in cells]
            )
            if cells
            else np.zeros((len(frame), 0), dtype=bool),
            incoherent=np.column_stack([f[i] for f in flags])
            if pairs
            else np.zeros((len(frame), 0)),
            weights=w,
        )
        for i, (frame, a, g, p, w) in enumerate(
            zip(frames, answers, given, patterns, weights)
        )
    ]
    human_into, replicate_into, gaps = _joint(codes, given, width=own)
    return Coding(
        human=coded[0],
        replicates=tuple(coded[1:]),
        human_into=human_into,
        replicate_into=replicate_into,
        gaps=gaps,
        n_outcomes=width if binning is None else int(binning.max()) + 1,
        judged_cells=np.flatnonzero(np.asarray(judged, dtype=bool)),
        spans=np.array(
            [
                scales[item.name].span
                if item.name in scales
                else np.ptp(np.asarray(item.codes, dtype=float))
                for item in study.items
            ]
        ),
    )


def _given(answers: np.ndarray) -> list[np.ndarray]:
    """Per item, the level positions a sample's answers take, ascending."""
    return [np.unique(column[column >= 0]) for column in answers.T]


def _compact(answers: np.ndarray, given: list[np.ndarray]) -> np.ndarray:
    """Each answer's position among its sample's own levels (``given``), -1 missing."""
    return np.column_stack(
        [
            np.where(column >= 0, np.searchsorted(levels, column), -1)
            for column, levels in zip(answers.T, given)
        ]
    )


def _own_codes(codes: np.ndarray, given: list[np.ndarray], *, width: int) -> np.ndarray:
    """The codes of a sample's own levels (items x ``width``, zero padded)."""
    out = np.zeros((len(given), width))
    for i, levels in enumerate(given):
        out[i, : len(levels)] = codes[i, levels]
    return out


def _joint(
    codes: np.ndarray, given: list[list[np.ndarray]], *, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``Coding.human_into``, ``replicate_into`` and ``gaps`` from each sample's levels
    (``given``: samples x items, the humans first) and every level's code."""
    human, *replicates = given
    unions = [[np.union1d(h, r) for h, r in zip(human, rep)] for rep in replicates]
    joint = 1 + max([1, *(len(u) for items in unions for u in items)])
    items = len(human)
    into = np.full((2, len(replicates), items, width), joint - 1)
    gaps = np.zeros((len(replicates), items, joint))
    for r, (rep, union) in enumerate(zip(replicates, unions)):
        for i, levels in enumerate(union):
            gaps[r, i, : max(0, len(levels) - 1)] = np.diff(codes[i, levels])
            for side, own in enumerate((human[i], rep[i])):
                into[side, r, i, : len(own)] = np.searchsorted(levels, own)
    into += (np.arange(items) * joint)[None, None, :, None]
    flat = into.reshape(2, len(replicates), items * width)
    return flat[0], flat[1], gaps


def _levels(
    item: Item, frames: Sequence[pd.DataFrame], *, numbered: bool
) -> np.ndarray:
    """An item's levels: its option codes in declared order, or for a number item the
    distinct answers of every sample, ascending."""
    if not numbered:
        return np.asarray(item.codes, dtype=float)
    answers = np.concatenate(
        [pd.to_numeric(f[item.name], errors="coerce").to_numpy(float) for f in frames]
    )
    return np.unique(answers[~np.isnan(answers)])


def _outcomes(
    study: Study, codes: np.ndarray, scales: Mapping[str, NumberScale]
) -> np.ndarray | None:
    """Each level's JSD outcome (items x levels, ascending; 0 past an item's levels):
    the level's position, or its bin for a number item whose ``NumberScale`` bins; None
    when none bins."""
    if all(
        scales.get(item.name) is None or scales[item.name].edges is None
        for item in study.items
    ):
        return None
    outcomes = np.where(np.isnan(codes), 0, np.arange(codes.shape[1])[None, :])
    for i, item in enumerate(study.items):
        scale = scales.get(item.name)
        if scale is not None and scale.edges is not None:
            outcomes[i] = np.nan_to_num(scale.bins(codes[i])).astype(int)
    return outcomes


def _answers(study: Study, frame: pd.DataFrame, codes: np.ndarray) -> np.ndarray:
    """Each answer's position among its item's ascending levels, -1 where missing."""
    return np.column_stack(
        [
            pd.Index(values[~np.isnan(values)]).get_indexer(
                pd.to_numeric(frame[item.name], errors="coerce").to_numpy(float)
            )
            for item, values in zip(study.items, codes)
        ]
    )


def _binned(answers: np.ndarray, outcomes: np.ndarray) -> np.ndarray:
    """Each answer's JSD outcome (``outcomes``: items x levels), -1 where missing."""
    picked = outcomes[np.arange(outcomes.shape[0])[None, :], np.maximum(answers, 0)]
    return np.where(answers >= 0, picked, -1)


def _pattern_ids(answer_sets: list[np.ndarray]) -> list[np.ndarray]:
    """One id per distinct answer vector across all samples; -1 where any is missing."""
    stacked = np.concatenate(answer_sets)
    complete = (stacked >= 0).all(axis=1)
    ids = np.full(len(stacked), -1)
    if complete.any():
        _, inverse = np.unique(stacked[complete], axis=0, return_inverse=True)
        ids[complete] = inverse.ravel()
    return np.split(ids, np.cumsum([len(a) for a in answer_sets])[:-1])


def headline_values(
    coding: Coding, human_rows: np.ndarray, replicate_rows: Sequence[np.ndarray]
) -> dict[str, float]:
    """Every bootstrapped headline metric and human level for one draw of rows
    (identity: the data)."""
    return headline_draws(coding, [(human_rows, replicate_rows)])[0]


def headline_draws(
    coding: Coding, draws: Sequence[tuple[np.ndarray, Sequence[np.ndarray]]]
) -> list[dict[str, float]]:
    """``headline_values`` of each draw (the human rows, each replicate's rows), every
    sample's counts for all draws at once: a draw's counts are its rows' weights summed
    per level, whole numbers exactly as counting gives them."""
    humans = _summaries(coding, coding.human, [human for human, _ in draws])
    reps = [
        _summaries(coding, coded, [rows[r] for _, rows in draws])
        for r, coded in enumerate(coding.replicates)
    ]
    every = np.arange(len(coding.replicates))
    return [
        metric_values(Draw(coding, human, tuple(rep[d] for rep in reps), every))
        for d, human in enumerate(humans)
    ]


def as_drawn(coding: Coding, tables: Mapping[str, pd.DataFrame]) -> Draw:
    """The data as drawn (each sample counted once), with the run's ``recovery`` rows
    over all respondents for the replicate metrics."""
    (human,) = _summaries(coding, coding.human, [np.arange(len(coding.human.answers))])
    reps = tuple(
        summary
        for coded in coding.replicates
        for summary in _summaries(coding, coded, [np.arange(len(coded.answers))])
    )
    return Draw(
        coding, human, reps, np.arange(len(reps)), overall_rows(tables["recovery"])
    )


def point_values(
    tables: Mapping[str, pd.DataFrame], coding: Coding
) -> dict[str, float]:
    """Every headline metric and human level of a run: each metric's ``value`` on its
    data as drawn (``coding``; ``tables``: the run's, for the replicate metrics)."""
    return metric_values(as_drawn(coding, tables))


def metric_values(draw: Draw) -> dict[str, float]:
    """Each registered headline metric's ``value`` on ``draw`` (``headline.HEADLINE``),
    its human level beside it; the replicate metrics only where the draw carries the
    run's ``recovery`` rows (the data as drawn, not a bootstrap draw)."""
    out: dict[str, float] = {}
    humans = draw.humans()
    for metric in HEADLINE:
        if metric.uncertainty == "replicates" and draw.recovery is None:
            continue
        out[metric.name] = metric.value(draw)
        if metric.human:
            out[metric.human] = metric.value(humans)
    return out


@dataclass(frozen=True)
class _Summary:
    """What the headline metrics read of one draw of a sample: level counts, JSD outcome
    counts overall and per judged cell, the share of missing answers, pattern levels and
    the incoherence rate of each belief–action pair."""

    counts: np.ndarray  # items x levels (ascending)
    outcomes: np.ndarray  # items x JSD outcomes
    squares: np.ndarray  # items: sum of the squared row weights of the answers
    cell_counts: np.ndarray  # judged cells x items x JSD outcomes
    missing: float
    patterns: tuple[float, float]
    incoherence: np.ndarray  # pairs


_CHUNK_ROWS = 1 << 20
"""Drawn rows counted at once."""
_CHUNK_COUNTS = 1 << 22
"""Counts (draws x items x levels, and x cells x outcomes) held at once: a number item
has as many levels as distinct answers."""


def _summaries(
    coding: Coding, coded: Coded, draws: Sequence[np.ndarray]
) -> list[_Summary]:
    """The summary of each draw of rows of one sample: each count is one ``bincount``
    over all draws (draw, cell, item and level or outcome in the key) of the rows'
    weights (whole numbers exactly as counting each draw alone gives them when
    unweighted), without BLAS (whose threads stall on a busy machine). A cell's counts
    are of JSD outcomes only (what ``_gap`` reads), never of a continuous item's
    distinct answers."""
    out = []
    items, width = coded.codes.shape
    outcomes = coding.n_outcomes * (1 + len(coding.judged_cells))
    counts_per_draw = items * (width + outcomes)
    step = max(
        1,
        min(
            _CHUNK_ROWS // max(1, len(coded.answers)),
            _CHUNK_COUNTS // counts_per_draw,
        ),
    )
    for start in range(0, len(draws), step):
        out += _summarise_chunk(coding, coded, draws[start : start + step])
    return out


def _summarise_chunk(
    coding: Coding, coded: Coded, draws: Sequence[np.ndarray]
) -> list[_Summary]:
    """``_summaries`` of a few draws, their rows concatenated."""
    items, width = coded.codes.shape
    cells, n_outcomes = coding.judged_cells, coding.n_outcomes
    size = len(draws)
    draw = np.repeat(np.arange(size), [len(rows) for rows in draws])
    rows = np.concatenate(draws)
    answers = coded.answers[rows]
    weight = None if coded.weights is None else coded.weights[rows]
    given = answers >= 0
    row_weights = (
        None if weight is None else np.broadcast_to(weight[:, None], answers.shape)
    )
    counts = _count(draw, answers, row_weights, size=size, width=width)
    outcomes = _count(
        draw, coded.outcomes[rows], row_weights, size=size, width=n_outcomes
    )
    # sum of squared row weights per (draw, item), for the variance: the count unweighted
    squares = (
        counts.sum(axis=-1)
        if row_weights is None
        else np.bincount(
            (draw[:, None] * items + np.arange(items)[None, :])[given],
            weights=row_weights[given] ** 2,
            minlength=size * items,
        ).reshape(size, items)
    )
    member, cell = np.nonzero(coded.levels[rows][:, cells])
    cell_counts = _count(
        draw[member] * len(cells) + cell,
        coded.outcomes[rows[member]],
        None if row_weights is None else row_weights[member],
        size=size * len(cells),
        width=n_outcomes,
    ).reshape(size, len(cells), items, n_outcomes)
    missing = np.bincount(draw, weights=(~given).sum(axis=1), minlength=size)
    flags = coded.incoherent[rows]
    rates = np.zeros((size, flags.shape[1]))  # incoherent / judged, per pair
    with np.errstate(invalid="ignore", divide="ignore"):
        for p, pair in enumerate(flags.T):
            scale = 1.0 if weight is None else weight
            judged = np.bincount(draw, weights=scale * ~np.isnan(pair), minlength=size)
            incoherent = np.bincount(draw, weights=scale * (pair == 1), minlength=size)
            rates[:, p] = incoherent / judged
    return [
        _Summary(
            counts=counts[d],
            outcomes=outcomes[d],
            squares=squares[d],
            cell_counts=cell_counts[d],
            missing=missing[d] / (len(drawn) * items),
            patterns=_pattern_levels(
                coded.patterns[drawn],
                None if coded.weights is None else coded.weights[drawn],
            ),
            incoherence=rates[d],
        )
        for d, drawn in enumerate(draws)
    ]


def _count(
    group: np.ndarray,
    positions: np.ndarray,
    weights: np.ndarray | None,
    *,
    size: int,
    width: int,
) -> np.ndarray:
    """Counts (``size`` groups x items x ``width``) of each row's ``positions`` (rows x
    items, -1 missing) in its ``group``, each row counting its ``weights`` (None: 1)."""
    items = positions.shape[1]
    given = positions >= 0
    keys = group[:, None] * (items * width) + np.arange(items)[None, :] * width
    counts = np.bincount(
        (keys + positions)[given],
        weights=None if weights is None else weights[given],
        minlength=size * items * width,
    )
    return counts.reshape(size, items, width)


@dataclass(frozen=True)
class Draw:
    """One draw of the human rows and of each replicate's rows as the headline metrics
    read it (``headline.Draw``): each sample's ``_Summary``; ``replicates``, where the
    replicates drawn stand in the coding; ``recovery``, the run's recovery rows over
    all respondents for the data as drawn (None in a bootstrap draw)."""

    coding: Coding
    human: _Summary
    reps: tuple[_Summary, ...]
    replicates: np.ndarray
    recovery: pd.DataFrame | None = None

    def jsd(self) -> np.ndarray:
        outcomes = np.stack([r.outcomes for r in self.reps])
        return _jsd(self.human.outcomes[None], outcomes)

    def wasserstein(self) -> np.ndarray:
        return _wasserstein(
            self.coding, self.human.counts, self._counts, self.replicates
        )

    def cell_jsd(self) -> np.ndarray:
        r_counts = np.stack([rep.cell_counts for rep in self.reps], axis=1)
        items = self.human.counts.shape[0]
        return np.array(
            [_jsd(h[None], r) for h, r in zip(self.human.cell_counts, r_counts)]
        ).reshape(len(r_counts), len(self.reps), items)

    def variance_ratios(self) -> np.ndarray:
        human = self.coding.human.codes, self.human.counts, self.human.squares
        reps = (
            np.stack([self.coding.replicates[r].codes for r in self.replicates]),
            self._counts,
            np.stack([r.squares for r in self.reps]),
        )
        return _variance(*reps) / _variance(*human)[None]

    def patterns(self) -> np.ndarray:
        return np.array([r.patterns for r in self.reps], dtype=float)

    def incoherence(self) -> np.ndarray:
        return np.array([r.incoherence for r in self.reps], dtype=float)

    def missing(self) -> np.ndarray:
        return np.array([r.missing for r in self.reps], dtype=float)

    def humans(self) -> Draw:
        """The humans in the replicates' place: for the metrics read from a sample
        alone (``wasserstein`` and ``variance_ratios`` need a replicate's levels)."""
        return Draw(self.coding, self.human, (self.human,), np.zeros(0, dtype=int))

    def each(self) -> list[Draw]:
        """Each replicate alone (with the humans), for Monte Carlo standard errors."""
        return [
            Draw(self.coding, self.human, (rep,), self.replicates[[i]])
            for i, rep in enumerate(self.reps)
        ]

    @cached_property
    def _counts(self) -> np.ndarray:
        """The replicates' level counts (replicates x items x levels)."""
        return np.stack([r.counts for r in self.reps])


def _jsd(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen–Shannon distance (base 2) along the last axis; NaN where a side is empty."""
    p, q = np.broadcast_arrays(p.astype(float), q.astype(float))
    empty = (p.sum(axis=-1) == 0) | (q.sum(axis=-1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = jensenshannon(p, q, axis=-1, base=2)
    out = np.where(np.isnan(out), 0.0, np.minimum(out, 1.0))
    return np.where(empty, np.nan, out)


def _wasserstein(
    coding: Coding,
    human: np.ndarray,
    reps: np.ndarray,
    replicates: Sequence[int] | np.ndarray,
) -> np.ndarray:
    """Earth mover's distance over the code range (replicates x items), from the
    humans' and each replicate's level counts put on their joint levels."""
    size, items = reps.shape[:2]
    joint = coding.gaps.shape[-1]
    p, q = np.zeros((2, size, items * joint))
    rows = np.arange(size)[:, None]
    p[rows, coding.human_into[replicates]] = human.reshape(1, -1)
    q[rows, coding.replicate_into[replicates]] = reps.reshape(size, -1)
    p, q = p.reshape(size, items, joint), q.reshape(size, items, joint)
    n_p, n_q = p.sum(axis=-1, keepdims=True), q.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        cdf = np.cumsum(p / n_p - q / n_q, axis=-1)
        span = coding.spans
        distance = (np.abs(cdf) * coding.gaps[replicates]).sum(axis=-1) / span
    return np.where(span > 0, distance, 0.0) * np.where(
        (n_p[..., 0] > 0) & (n_q[..., 0] > 0), 1.0, np.nan
    )


def _variance(codes: np.ndarray, counts: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """Each item's variance from its levels' codes, their (weighted) counts and the sum
    of its squared row weights: ``metrics.weighted_variance``, the ddof-1 variance when
    unweighted."""
    n = counts.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (counts * codes).sum(axis=-1) / n
        square = (counts * codes**2).sum(axis=-1)
        # n - squares / n is 0 (up to rounding) with fewer than two answers
        spread_n = n - squares / n
        enough = spread_n > 1e-9 * n
        return np.where(
            enough, (square - n * mean**2) / np.where(enough, spread_n, 1), np.nan
        )


def _pattern_levels(
    patterns: np.ndarray, weights: np.ndarray | None
) -> tuple[float, float]:
    """Distinct complete patterns and their Miller–Madow corrected entropy (bits), the
    shares weighted and n Kish's effective size (``metrics.heterogeneity``)."""
    kept = patterns >= 0
    complete = patterns[kept]
    w = np.ones(len(complete)) if weights is None else weights[kept]
    if not len(complete):
        return 0.0, np.nan
    ids, inverse = np.unique(complete, return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights=w)
    p = counts / counts.sum()
    entropy = float(-(p * np.log2(p)).sum())
    effective = w.sum() ** 2 / (w**2).sum()
    return float(len(ids)), entropy + (len(ids) - 1) / (2 * effective * np.log(2))


# --- replicate samples --------------------------------------------------------------------


def draw_rows(
    personas: pd.DataFrame,
    *,
    rng: np.random.Generator,
    cluster: str | None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Row positions of one replicate: n personas with replacement, or whole clusters;
    under survey ``weights`` each persona (each cluster) with probability proportional
    to its weight (its weight total), so a replicate stands for the population."""
    if cluster is None:
        if weights is None:
            return rng.integers(len(personas), size=len(personas))
        return rng.choice(len(personas), size=len(personas), p=weights / weights.sum())
    groups = list(personas.groupby(cluster, sort=True, dropna=False).indices.values())
    if weights is None:
        picked = rng.integers(len(groups), size=len(groups))
    else:
        totals = np.array([weights[g].sum() for g in groups])
        picked = rng.choice(len(groups), size=len(groups), p=totals / totals.sum())
    return np.concatenate([groups[g] for g in picked])


def simulate_replicates(
    binding: Binding,
    simulator: Simulator,
    personas: pd.DataFrame,
    draws: Sequence[np.ndarray],
    seeds: np.ndarray,
    *,
    desc: str = "replicates",
    enabled: bool | None = False,
) -> list[pd.DataFrame]:
    """Each replicate's personas with the simulator's answers beside them, under a
    progress bar (``desc``) unless ``enabled`` is False.

    Under clustering, a cluster drawn twice becomes two clusters (renumbered after the
    simulator has answered, so the simulator sees the personas as they are).
    """
    samples = []
    steps = progress_bar(
        zip(draws, seeds), desc=desc, total=len(draws), unit="replicates",
        enabled=enabled,
    )  # fmt: skip
    for positions, seed in steps:
        drawn = personas.iloc[positions]
        answers = simulator.simulate(drawn, binding.study.items, seed=seed)
        answers = check_output(
            answers, personas=drawn, items=binding.study.items, simulator=simulator
        )
        # a declared non-answer (a resampled human's "don't know") is a missing answer
        sample = pd.concat([drawn, binding.study.blank_missing(answers)], axis=1)
        if binding.cluster is not None:
            sample[binding.cluster] = cluster_draw_ids(
                drawn[binding.cluster], positions
            )
        samples.append(sample)
    return samples


def cluster_draw_ids(clusters: pd.Series, positions: np.ndarray) -> np.ndarray:
    """A new id per drawn cluster. ``draw_rows`` takes a cluster's rows in increasing order,
    so a draw starts where the cluster changes or the positions stop increasing (a
    cluster drawn twice in a row is two clusters, not one of twice the size)."""
    values = clusters.to_numpy()
    starts = np.r_[True, (values[1:] != values[:-1]) | (np.diff(positions) <= 0)]
    return np.cumsum(starts)


def headline_table(
    found: Mapping[str, pd.DataFrame],
    references: Mapping[str, float],
    draws: pd.DataFrame,
    coding: Coding,
    *,
    alpha: float,
) -> pd.DataFrame:
    """A row per headline metric (value, CI, Monte Carlo SE, reference: the fresh-sample
    run's value, ``references``, or the humans' own level), then the humans' own
    levels; each metric's ``value`` on the data as drawn is its value."""
    drawn = as_drawn(coding, found)
    values = metric_values(drawn)
    mcse = _mcse(found["replicate_metrics"], drawn)
    by_draw, per_rep = _by_metric(draws), _by_metric(found["replicate_metrics"])
    rows = []
    for name in [m.name for m in HEADLINE] + list(HUMAN_LEVELS):
        spec = METRICS.get(name)
        low, high = _bootstrap_interval(
            by_draw.get(name, _NONE), value=values[name], alpha=alpha
        )
        if spec is not None and spec.uncertainty == "replicates":
            low, high = _replicate_interval(per_rep.get(name, _NONE), alpha=alpha)
        low, high = np.clip([low, high], *(spec.bounds if spec else (0, np.inf)))
        reference = math.nan
        if spec is not None:
            reference = (
                values[spec.human] if spec.reference == "human" else references[name]
            )
        rows.append(
            {
                "metric": name,
                "label": spec.label if spec else name.replace("_", " "),
                "value": values[name],
                "ci_low": float(low),
                "ci_high": float(high),
                "mcse": mcse.get(name, math.nan),
                "reference": reference,
            }
        )
    return pd.DataFrame(
        rows,
        columns=["metric", "label", "value", "ci_low", "ci_high", "mcse", "reference"],
    )


_NONE = np.zeros(0)
"""No values of a metric."""


def _by_metric(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The non-missing ``value``s of a (metric, ..., value) table per metric, in order."""
    metrics = frame["metric"].to_numpy()
    values = frame["value"].to_numpy(dtype=float)
    given = ~np.isnan(values)
    return {name: values[given & (metrics == name)] for name in dict.fromkeys(metrics)}


def _bootstrap_interval(
    drawn: np.ndarray, *, value: float, alpha: float
) -> tuple[float, float]:
    """The estimate plus the spread of its bootstrap draws (their quantiles minus their
    mean). A distance between two resampled samples is biased upward (resampling adds
    noise), so plain percentiles can miss the estimate; the spread is what the interval
    shows, and each metric's reference value shows the noise level."""
    if len(drawn) < 2 or not math.isfinite(value):
        return math.nan, math.nan
    low, high = np.quantile(drawn, [alpha / 2, 1 - alpha / 2]) - drawn.mean()
    return float(value + low), float(value + high)


def _replicate_interval(values: np.ndarray, *, alpha: float) -> tuple[float, float]:
    """A t interval of a replicate metric's mean over replicates (its Monte Carlo CI)."""
    values = pd.Series(values)  # pandas' mean and std: numpy's sum in another order
    if len(values) < 2:
        return math.nan, math.nan
    half = (
        scipy.stats.t.ppf(1 - alpha / 2, len(values) - 1)
        * values.std(ddof=1)
        / math.sqrt(len(values))
    )
    return float(values.mean() - half), float(values.mean() + half)


def _mcse(per_rep: pd.DataFrame, drawn: Draw) -> dict[str, float]:
    """Monte Carlo standard error over replicates of each simulated metric: the replicate
    metrics' from ``per_rep`` (metric, rep, value), the others' from each replicate
    alone (``Draw.each``)."""
    out = {}
    for name, values in per_rep.groupby("metric")["value"]:
        values = values.dropna()
        out[name] = (
            float(values.std(ddof=1) / math.sqrt(len(values)))
            if len(values) > 1
            else math.nan
        )
    if len(drawn.reps) > 1:
        single = [metric_values(one) for one in drawn.each()]
        for name in single[0]:
            if name in METRICS and name not in out:
                values = np.array([s[name] for s in single], dtype=float)
                values = values[np.isfinite(values)]
                out[name] = (
                    float(values.std(ddof=1) / math.sqrt(len(values)))
                    if len(values) > 1
                    else math.nan
                )
    return out


def bootstrap_draws(
    coding: Coding, *, resamples: int, rng: np.random.Generator
) -> pd.DataFrame:
    """``resamples`` draws of every distribution-based headline metric, resampling the
    human respondents and each replicate's rows (the same draws for every simulator
    validated with the same seed, so differences between simulators are paired)."""
    n = len(coding.human.answers)
    draws = [
        (
            rng.integers(n, size=n),
            [
                rng.integers(len(r.answers), size=len(r.answers))
                for r in coding.replicates
            ],
        )
        for _ in range(resamples)
    ]
    rows = [
        (name, draw, value)
        for draw, values in enumerate(headline_draws(coding, draws))
        for name, value in values.items()
    ]
    return pd.DataFrame(rows, columns=["metric", "draw", "value"])
