"""Prompts grouped by shared token prefix, so each shared prefix is computed once.

Sorted token sequences form a tree: neighbours share a long prefix (instructions,
vignette, question) except where that prefix changes (a new item or arm). Scoring
(``HFSimulator``) and training (``simval.finetune``) both batch within groups of
prompts that share a prefix and run that prefix once per group or batch.
"""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np


def prefix_groups(prompts: list[list[int]], *, batch_size: int) -> list[list[int]]:
    """Indices of ``prompts`` in groups whose members share a long token prefix.

    Sorted, the prompts form a tree: a run of them splits, where neighbours share the
    fewest tokens, into runs that share more. Each run stays one group or splits into
    its sub-runs, whichever computes fewer prompt tokens when every batch (at most
    ``batch_size`` of one group) runs the group's common prefix once. With the default
    prompts a group is one item and arm (only the persona block differs), or finer
    where whole prompts repeat.
    """
    order = sorted(range(len(prompts)), key=prompts.__getitem__)
    shared = [shared_length(prompts[a], prompts[b]) for a, b in pairwise(order)]
    lengths = [len(prompts[i]) for i in order]
    _, runs = _cheapest_runs(
        0, len(order), shared=shared, lengths=lengths, batch_size=batch_size
    )
    return [order[lo:hi] for lo, hi in runs]


def _cheapest_runs(
    lo: int, hi: int, *, shared: list[int], lengths: list[int], batch_size: int
) -> tuple[int, list[tuple[int, int]]]:
    """(prompt tokens computed, runs) for sorted prompts ``lo..hi-1``, kept whole or split.

    A run of n prompts with common prefix p costs ceil(n / batch_size) prefixes plus
    each prompt's remaining tokens; ``shared[k]`` is what prompts k and k+1 share. A
    prefix always leaves each prompt at least one token of its own.
    """
    if hi - lo == 1:
        return lengths[lo], [(lo, hi)]
    least = min(shared[lo : hi - 1])
    prefix = min(least, min(lengths[lo:hi]) - 1)
    whole = (
        math.ceil((hi - lo) / batch_size) * prefix
        + sum(lengths[lo:hi])
        - (hi - lo) * prefix
    )
    cuts = [lo, *(k + 1 for k in range(lo, hi - 1) if shared[k] == least), hi]
    parts = [
        _cheapest_runs(a, b, shared=shared, lengths=lengths, batch_size=batch_size)
        for a, b in pairwise(cuts)
    ]
    split = sum(cost for cost, _ in parts)
    if whole <= split:
        return whole, [(lo, hi)]
    return split, [run for _, runs in parts for run in runs]


def shared_length(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of two token sequences."""
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def common_prefix(sequences: list[list[int]]) -> int:
    """Length of the common prefix, leaving every sequence at least one token of its own."""
    shared = min(shared_length(sequences[0], s) for s in sequences)
    return min(shared, min(len(s) for s in sequences) - 1)


def group_batches(groups: list[list[int]], *, size: int) -> list[list[int]]:
    """Each group, in order, cut into ceil(n / size) consecutive batches of near-equal size."""
    return [
        part.tolist()
        for group in groups
        for part in np.array_split(np.asarray(group), math.ceil(len(group) / size))
    ]
