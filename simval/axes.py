"""The per-axis tables: distributions, variance, heterogeneity and coherence.

Each function compares the humans' answers with the replicates' on one axis, overall
and per subgroup cell, as a tidy table (definitions: ``metrics`` and docs/metrics.md).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from simval.binding import Binding, Split, cell_masks
from simval.metrics import (
    geometric_mean,
    heterogeneity,
    incoherence_flags_each,
    jsd,
    nan_mean,
    variance_ratio,
    wasserstein,
    weighted_mean,
    weighted_variance,
)
from simval.results import OVERALL
from simval.study import MAX_OBSERVED_OPTIONS, Coherence, Item, plain_number

# --- distributions, variance, heterogeneity, coherence ------------------------------


def distribution_table(
    binding: Binding, human: Split, replicates: list[Split]
) -> pd.DataFrame:
    """JSD and ordinal distance between the human and each replicate's answers, per
    item and group (means over the replicates that answered)."""
    rows = []
    for group, people in human.items():
        sims = [replicate[group] for replicate in replicates]
        weights = binding.weights(people)
        for item in binding.study.items:
            name = item.name
            scale = binding.scales.get(name)
            human_answers = people[name] if scale is None else scale.bins(people[name])
            codes = item.codes if scale is None else (0.0, scale.span)
            columns = [sim[name] for sim in sims]
            given = [int(column.notna().sum()) for column in columns]
            answered = [column for column, n in zip(columns, given) if n]
            n_human = int(people[name].notna().sum())
            has_human = n_human > 0
            rows.append(
                {
                    "item": name,
                    "subgroup": group[0],
                    "level": group[1],
                    "n_human": n_human,
                    "n_sim": nan_mean(given),
                    "small": group != (OVERALL, OVERALL)
                    and len(people) < binding.min_subgroup_n,
                    "jsd": nan_mean(
                        [
                            jsd(
                                human_answers,
                                a if scale is None else scale.bins(a),
                                a_weights=weights,
                            )
                            for a in answered
                        ]
                    )
                    if has_human
                    else math.nan,
                    "wasserstein": nan_mean(
                        [
                            wasserstein(people[name], a, codes=codes, a_weights=weights)
                            for a in answered
                        ]
                    )
                    if has_human
                    else math.nan,
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "item",
            "subgroup",
            "level",
            "n_human",
            "n_sim",
            "small",
            "jsd",
            "wasserstein",
        ],
    )


def variance_table(
    binding: Binding, human: Split, replicates: list[Split]
) -> pd.DataFrame:
    """Variance of each item, human vs simulated, per group; ratio is the geometric mean
    of the per-replicate ratios (a ratio of 1/2 is as far off as one of 2)."""
    rows = []
    for group, people in human.items():
        sims = [replicate[group] for replicate in replicates]
        weights = binding.weights(people)
        for name in binding.study.item_names:
            human_var = (
                float(people[name].var())
                if weights is None
                else weighted_variance(people[name], weights)
            )
            rows.append(
                {
                    "item": name,
                    "subgroup": group[0],
                    "level": group[1],
                    "human_var": human_var,
                    "sim_var": nan_mean([sim[name].var() for sim in sims]),
                    "ratio": geometric_mean(
                        [
                            variance_ratio(
                                sim[name], people[name], human_weights=weights
                            )
                            for sim in sims
                        ]
                    ),
                }
            )
    return pd.DataFrame(
        rows, columns=["item", "subgroup", "level", "human_var", "sim_var", "ratio"]
    )


def heterogeneity_table(
    binding: Binding, human: Split, replicates: list[Split]
) -> pd.DataFrame:
    """Distinct response patterns and their bias-corrected entropy over the pattern items,
    per group. Each replicate answers as many personas as there are humans, so the
    counts compare at equal n; nonresponse leaves fewer complete patterns."""
    items = list(binding.pattern_items)
    rows = []
    for group, people in human.items():
        own = heterogeneity(people, items, weights=binding.weights(people))
        sims = [heterogeneity(replicate[group], items) for replicate in replicates]
        rows.append(
            {
                "subgroup": group[0],
                "level": group[1],
                "n_human": own.n,
                "n_sim": nan_mean([h.n for h in sims]),
                "small": group != (OVERALL, OVERALL)
                and len(people) < binding.min_subgroup_n,
                "unique_patterns_human": own.unique_patterns,
                "unique_patterns_sim": nan_mean([h.unique_patterns for h in sims]),
                "entropy_human": own.entropy_corrected,
                "entropy_sim": nan_mean([h.entropy_corrected for h in sims]),
            }
        )
    return pd.DataFrame(rows)


COHERENCE_COLUMNS = [
    "belief",
    "action",
    "rule",
    "scope",
    "subgroup",
    "level",
    "n_human",
    "n_sim",
    "incoherence_human",
    "incoherence_sim",
]


def coherence_table(
    binding: Binding, human: Split, replicates: list[Split]
) -> pd.DataFrame:
    """Belief–action incoherence rates, human vs simulated, per pair (and per rule) and group.

    A pair's row counts a respondent incoherent when any of its rules holds (the
    rules joined with ``or``); a pair declared with several rules (say, high concern
    yet discloses, low concern yet refuses) also gets one ``rule`` row per rule. A
    rule judges one respondent at a time, so it is evaluated once for all samples
    (``incoherence_flags_each``) and its flags read per group.
    """
    samples = [split[OVERALL, OVERALL] for split in (human, *replicates)]
    masks = [cell_masks(binding, sample) for sample in samples]
    human_weights = binding.weights(samples[0])
    if human_weights is None:
        human_weights = np.ones(len(samples[0]))
    rows = []
    for pair, rules in coherence_pairs(binding.study.coherence):
        scoped = [("pair", pair)]
        scoped += (
            [("rule", Coherence(pair.belief, pair.action, r)) for r in rules]
            if len(rules) > 1
            else []
        )
        for scope, rule in scoped:
            flags = incoherence_flags_each(samples, rule)
            for group in human:
                inside = [m[group] for m in masks]
                picked = [f[m] for f, m in zip(flags, inside)]
                rows.append(
                    {
                        "belief": rule.belief,
                        "action": rule.action,
                        "rule": rule.rule,
                        "scope": scope,
                        "subgroup": group[0],
                        "level": group[1],
                        "n_human": int(inside[0].sum()),
                        "n_sim": nan_mean([m.sum() for m in inside[1:]]),
                        "incoherence_human": weighted_mean(
                            picked[0], human_weights[inside[0]]
                        ),
                        "incoherence_sim": nan_mean([nan_mean(f) for f in picked[1:]]),
                    }
                )
    return pd.DataFrame(rows, columns=COHERENCE_COLUMNS)


def coherence_pairs(
    coherence: Sequence[Coherence],
) -> list[tuple[Coherence, list[str]]]:
    """Each belief–action pair as one Coherence whose rule joins its rules with ``or``,
    with the rules themselves, in declaration order."""
    rules: dict[tuple[str, str], list[str]] = {}
    for entry in coherence:
        rules.setdefault((entry.belief, entry.action), []).append(entry.rule)
    return [
        (
            Coherence(
                belief,
                action,
                " or ".join(f"({r})" for r in listed) if len(listed) > 1 else listed[0],
            ),
            listed,
        )
        for (belief, action), listed in rules.items()
    ]


def item_shares(binding: Binding, samples: list[pd.DataFrame]) -> pd.DataFrame:
    """Share of each option among the answers, human and simulated (mean over
    replicates). A whole-number item (a formula's 1-5 outcome) is shown the same way
    over the values the humans and the replicates gave, when there are at most
    ``MAX_OBSERVED_OPTIONS`` of them; other number items have no such table (their
    distributions are in ``distribution_table``)."""
    human_df, rows = binding.human, []
    for item in binding.study.items:
        levels = _share_levels(item, human_df[item.name], samples)
        if levels is None:
            continue
        human = _level_shares(
            human_df[item.name], levels, weights=binding.weights(human_df)
        )
        sims = np.array(
            [_level_shares(sample[item.name], levels) for sample in samples]
        )
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            sim = np.nanmean(sims, axis=0)
        for (label, code), h, m in zip(levels.items(), human, sim):
            rows.append((item.name, float(code), label, h, m))
    return pd.DataFrame(rows, columns=["item", "code", "label", "human", "sim"])


def _share_levels(
    item: Item, human: pd.Series, samples: list[pd.DataFrame]
) -> dict[str, float] | None:
    """The (label, code) levels ``item_shares`` counts for ``item``: its options, or the
    values a whole-number item took (None when not whole or too many)."""
    if not item.is_number:
        return dict(item.options)
    if not item.number.whole:
        return None
    given = pd.concat([human, *(s[item.name] for s in samples)])
    values = np.unique(pd.to_numeric(given, errors="coerce").dropna().to_numpy(float))
    if len(values) > MAX_OBSERVED_OPTIONS:
        return None
    return {plain_number(v): float(v) for v in values}


def _level_shares(
    answers: pd.Series,
    levels: Mapping[str, float],
    *,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Share of the non-missing answers taking each level's code, weighted by survey
    ``weights`` when given (NaN with none)."""
    values = pd.to_numeric(answers, errors="coerce").to_numpy(float)
    given = ~np.isnan(values)
    if not given.any():
        return np.full(len(levels), np.nan)
    w = np.ones(len(values)) if weights is None else weights
    return np.array(
        [
            np.average(values[given] == code, weights=w[given])
            for code in levels.values()
        ]
    )
