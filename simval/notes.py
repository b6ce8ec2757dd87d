"""What a validation's notes say: missing answers, clusters, weights, the reference's
health, the versions that produced it, and the cautions a reader must see."""

from __future__ import annotations

import math
from collections import Counter
from functools import cache
from importlib import metadata
from typing import Any

import pandas as pd

from simval.binding import Binding, Key, overall_rows
from simval.comparison import MIN_EVENTS_PER_PARAMETER, few_events
from simval.metrics import nan_mean
from simval.regression import Fit
from simval.results import MAX_FAILED_SHARE, OVERALL
from simval.simulators.base import ParsingSimulator, Simulator

FEW_CLUSTERS = 30
"""Cluster-robust errors with fewer clusters are unreliable; the notes warn."""


def reference_notes(recovery: pd.DataFrame, *, redraws: int) -> dict[str, Any]:
    """The notes about the reference: what it is (``reference``), how many of its
    pseudo-populations were redrawn (``reference_redraws``) and, per formula, its
    difference-CI coverage, false-positive rate, Wald p-value and share of failed
    replicates overall (``reference_recovery``, None where undefined, so the notes
    survive JSON), which a perfect simulator shares in expectation."""
    overall = overall_rows(recovery)
    names = ("coverage", "false_positive_rate", "wald_p_value", "failed_share")
    return {
        "reference": "whole-row double bootstrap: each replicate resamples one "
        "bootstrap pseudo-population of the humans, persona and answers together",
        "reference_redraws": redraws,
        "reference_recovery": {
            formula: {
                name: float(value) if math.isfinite(value) else None
                for name, value in zip(names, values)
            }
            for formula, *values in overall[["formula", *names]].itertuples(index=False)
        },
    }


def unparseable_counts(simulator: Simulator) -> Counter[str]:
    """The simulator's running count of unreadable answers per item (generate mode),
    copied; none for simulators that always answer with an option."""
    if not isinstance(simulator, ParsingSimulator):
        return Counter()
    return Counter(simulator.unparseable or {})


def validation_notes(
    binding: Binding,
    reference: dict[str, Any],
    samples: list[pd.DataFrame],
    human_fits: dict[Key, Fit | str],
    *,
    unparseable: Counter[str],
) -> dict[str, Any]:
    """What the reader must know beside the numbers: the simulator's nonresponse per
    item and its ``unparseable`` answers per item in this validation's replicates, the
    notes about the reference (``reference_notes``), the humans with missing persona
    values and their declared missing answers (the ``binding``'s notes, None without
    either: ``Study.missing_persona_note``, ``Study.missing_answers_note``), the survey weights
    (``weights_note``, None without) and warnings."""
    cautions = []
    for (formula, subgroup, _), human in human_fits.items():
        clusters = getattr(human, "clusters", None) if subgroup == OVERALL else None
        if clusters is not None and clusters < FEW_CLUSTERS:
            cautions.append(
                f"{formula}: cluster-robust errors on {clusters} clusters "
                f"(fewer than {FEW_CLUSTERS}) are unreliable"
            )
    cautions.extend(reference_cautions(binding, reference, human_fits))
    small = sorted(
        {
            f"{s}={lvl}"
            for (_, s, lvl), h in human_fits.items()
            if s != OVERALL and isinstance(h, str)
        }
    )
    if small:
        cautions.append(
            f"human models not estimable in subgroup cell(s): {', '.join(small)}"
        )
    return {
        "nonresponse": {
            item: nan_mean([sample[item].isna().mean() for sample in samples])
            for item in binding.study.item_names
        },
        "unparseable": {
            item: int(unparseable[item]) for item in binding.study.item_names
        },
        **reference,
        "missing_personas": binding.missing_personas,
        "missing_answers": binding.missing_answers,
        "weights": weights_note(binding),
        "warnings": cautions,
    }


def reference_cautions(
    binding: Binding,
    reference: dict[str, Any],
    human_fits: dict[Key, Fit | str],
) -> list[str]:
    """Where the fresh reference is not shown calibrated for this study, said beside its
    numbers: a model it could not fit in some replicates, a pseudo-population redrawn,
    or a binary outcome with under ``MIN_EVENTS_PER_PARAMETER`` events per coefficient
    (below that, its double bootstrap doubles the logit's small-sample bias:
    docs/metrics.md)."""
    cautions = []
    recovery = reference.get("reference_recovery", {})
    failing = any(
        (v.get("failed_share") or 0.0) >= MAX_FAILED_SHARE for v in recovery.values()
    )
    if reference.get("reference_redraws"):
        cautions.append(
            f"the fresh reference's pseudo-population was redrawn "
            f"{reference['reference_redraws']} time(s) because a model failed in half "
            "its replicates: "
            + (
                "it still fails there, so the models cannot be fitted reliably on "
                "samples of this size"
                if failing
                else "its values hold for a population where the models can be fit"
            )
        )
    for model in binding.study.models:
        failed = recovery.get(model.formula, {}).get("failed_share") or 0.0
        if failed >= 1:
            cautions.append(
                f"{model.formula}: the fresh reference could not fit the model in any "
                "of its replicates; its coefficient values are no perfect simulator's"
            )
        elif failed > 0:
            cautions.append(
                f"{model.formula}: the fresh reference could not fit the model in "
                f"{failed:.0%} of its replicates; its values rest on the others"
            )
        human = human_fits.get((model.formula, OVERALL, OVERALL))
        if isinstance(human, Fit) and few_events(model, human, binding.human):
            cautions.append(
                f"{model.formula}: under {MIN_EVENTS_PER_PARAMETER} events per "
                "coefficient; the fresh reference is not proven calibrated there, so "
                "read its values as approximate"
            )
    return cautions


def weights_note(binding: Binding) -> str | None:
    """One sentence on the survey weights (None without): the column, Kish's effective
    sample size, and what they weight."""
    weights = binding.weights(binding.human)
    if weights is None:
        return None
    effective = weights.sum() ** 2 / (weights**2).sum()
    return (
        f"Survey weights from column {binding.weight!r} (Kish effective sample size "
        f"{effective:.0f} of {len(weights)}): the humans' fits, shares, variances, "
        "pattern entropy and incoherence rates are weighted; replicate personas are "
        "drawn in proportion to the weights and their answers count once."
    )


@cache
def versions() -> dict[str, str]:
    """Versions of simval and the libraries its numbers come from."""
    names = (
        "simval",
        "numpy",
        "pandas",
        "scipy",
        "statsmodels",
        "formulaic",
        "linearmodels",
    )
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
