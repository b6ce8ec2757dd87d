"""validate(): would the study reach the same conclusions on simulated respondents?

Orchestration only: it draws replicate samples of personas, asks the simulator to
answer them, draws the fresh-sample reference's replicates beside them
(``fresh_reference``), fits the study's models and computes every metric on the human
data and on each replicate, overall and per subgroup, resamples respondents for the
metrics' confidence intervals and gathers it all in a ``Validation``. The statistics
live in ``regression`` and ``metrics``; the result, its registry of headline metrics
and the decisions in ``results``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from simval.axes import (
    coherence_pairs,
    coherence_table,
    distribution_table,
    heterogeneity_table,
    item_shares,
    variance_table,
)
from simval.binding import (
    Binding,
    Key,
    Split,
    bind,
    check_no_leakage,
    cluster_column,
    fingerprint,
    overall_only,
    overall_rows,
    split_cells,
)
from simval.comparison import coefficient_tables, fit_humans, verdict_table
from simval.errors import (
    OptionError,
    SimulatorError,
)
from simval.metrics import (
    nan_mean,
)
from simval.notes import reference_notes, unparseable_counts, validation_notes, versions
from simval.regression import Fit
from simval.resampling import (
    Coding,
    bootstrap_draws,
    cluster_draw_ids,
    code_samples,
    draw_rows,
    headline_table,
    point_values,
    simulate_replicates,
)
from simval.results import (
    MAX_FAILED_SHARE,
    NOT_FINDINGS,
    OVERALL,
    Validation,
    summary_table,
)
from simval.simulators.base import Simulator
from simval.study import (
    Study,
)

__all__ = [
    "NOT_FINDINGS",
    "OVERALL",
    "Validation",
    "compare",
    "fresh_reference",
    "summary_table",
    "validate",
    "validate_each",
]

MIN_SUBGROUP_N = 30
"""Subgroup cells with fewer human respondents are flagged ``small`` and kept out of the
headline numbers: below about 30 the JSD between two samples of one distribution
exceeds 0.2 for a five-option item, and a cell's regression rests on a handful of rows."""


def validate(
    formula_or_study: str | Study,
    human_df: pd.DataFrame,
    simulator: Simulator,
    *,
    family: str = "ols",
    cov: str = "HC1",
    subgroups: Sequence[str] | None = None,
    items: Sequence[str] | None = None,
    reps: int = 20,
    alpha: float = 0.05,
    seed: int | None = 0,
    resamples: int = 200,
    min_subgroup_n: int = MIN_SUBGROUP_N,
    progress: bool | None = None,
) -> Validation:
    """Compare ``reps`` synthetic replicate samples from ``simulator`` with the human data.

    Each replicate draws n personas from the humans with replacement (whole clusters
    under a ``cluster:`` covariance), simulates their answers, fits every model and
    computes every metric, overall and in each subgroup level. The fresh-sample
    reference (``fresh_reference``, whole humans resampled twice) gives each
    metric's value under a perfect simulator; ``resamples`` bootstrap resamples of the
    respondents give the headline metrics' confidence intervals.

    With a formula, the simulated columns are its outcome plus ``items``; every other
    column of ``human_df`` is persona data the simulator sees. With a ``Study``, the
    simulated columns are its items and ``family``/``cov``/``items`` come from it.

    ``progress``: a bar over the simulator's replicates (plain lines in a log, then a
    summary line with the time taken, ``simval.progress``); ``False`` silences it.
    """
    plan = bind(
        formula_or_study,
        human_df,
        declared=getattr(simulator, "study", None),
        family=family,
        cov=cov,
        subgroups=subgroups,
        items=items,
        reps=reps,
        alpha=alpha,
        resamples=resamples,
        min_subgroup_n=min_subgroup_n,
    )
    _check_simulator(human_df, simulator)
    shared = _share(plan, human_df, reps=reps, alpha=alpha, seed=seed)
    return _validation(shared, simulator, resamples=resamples, progress=progress)


def validate_each(
    formula_or_study: str | Study,
    human_df: pd.DataFrame,
    simulators: Mapping[str, Simulator],
    *,
    family: str = "ols",
    cov: str = "HC1",
    subgroups: Sequence[str] | None = None,
    items: Sequence[str] | None = None,
    reps: int = 20,
    alpha: float = 0.05,
    seed: int | None = 0,
    resamples: int = 200,
    min_subgroup_n: int = MIN_SUBGROUP_N,
    progress: bool | None = None,
) -> dict[str, Validation]:
    """``validate`` of each simulator on the same humans with the same settings.

    What does not depend on the simulator is computed once: the human fits, the
    replicate personas and the fresh-sample reference's run, about half of what a
    validation costs beside the simulator. Each result equals that simulator's own
    ``validate`` call; with one seed the replicates and bootstrap resamples are
    paired across simulators, as ``compare`` and leaderboards need.
    """
    if not simulators:
        raise OptionError("validate_each needs at least one simulator")
    plans = {
        name: bind(
            formula_or_study, human_df, declared=getattr(simulator, "study", None),
            family=family, cov=cov, subgroups=subgroups, items=items, reps=reps,
            alpha=alpha, resamples=resamples, min_subgroup_n=min_subgroup_n,
        )
        for name, simulator in simulators.items()
    }  # fmt: skip
    for simulator in simulators.values():
        _check_simulator(human_df, simulator)
    shared: list[_Shared] = []
    validations = {}
    for name, simulator in simulators.items():
        common = next((s for s in shared if s.plan == plans[name]), None)
        if common is None:  # a formula's items can come from a simulator's own study
            common = _share(plans[name], human_df, reps=reps, alpha=alpha, seed=seed)
            shared.append(common)
        validations[name] = _validation(
            common, simulator, resamples=resamples, progress=progress
        )
    return validations


@dataclass(frozen=True)
class _Shared:
    """What a validation computes before asking the simulator: the same for every
    simulator validated on these humans with these settings."""

    plan: Binding
    human_df: pd.DataFrame
    human: Split
    human_fits: dict[Key, Fit | str]
    personas: pd.DataFrame
    draws: list[np.ndarray]
    seeds: np.ndarray
    reference: dict[str, Any]  # the notes about the reference (``reference_notes``)
    references: dict[str, float]  # the headline values of the reference's run
    rng: np.random.Generator  # in the state the bootstrap starts from
    alpha: float
    seed: int | None
    fingerprint: str
    missing_answers: str | None  # Study.missing_answers_note of the raw human data


def _share(
    plan: Binding, human_df: pd.DataFrame, *, reps: int, alpha: float, seed: int | None
) -> _Shared:
    """The human fits, the replicate draws and the fresh-sample reference's run; the
    humans' declared missing answers are blanked first (``Study.blank_missing``)."""
    missing_answers = plan.study.missing_answers_note(human_df)
    human_df = plan.study.blank_missing(human_df)
    human = split_cells(plan, human_df)
    human_fits = fit_humans(plan, human, alpha=alpha)
    rng = np.random.default_rng(seed)
    personas = human_df[list(plan.persona_columns)]
    weights = plan.weights(human_df)
    draws = [
        draw_rows(personas, rng=rng, cluster=plan.cluster, weights=weights)
        for _ in range(reps)
    ]
    seeds = rng.integers(2**63, size=reps)
    # A pseudo-population on which a model the humans fit fails in half the replicates
    # or more (a rare level separating a logit) is redrawn: the truth a perfect
    # simulator samples is no such population. The notes count the redraws.
    reference_rng = np.random.default_rng(rng.integers(2**63))
    for redraws in range(REFERENCE_REDRAWS + 1):
        reference_samples = fresh_reference(
            plan.study, human_df, reps=reps, seed=reference_rng
        )
        fresh = _evaluate(
            plan, human, human_fits, reference_samples, alpha=alpha, subgroups=False
        )
        if not _unestimable(fresh["recovery"]):
            break
    return _Shared(
        plan=plan, human_df=human_df, human=human, human_fits=human_fits,
        personas=personas, draws=draws, seeds=seeds,
        reference=reference_notes(fresh["recovery"], redraws=redraws),
        references=point_values(fresh), rng=rng, alpha=alpha, seed=seed,
        fingerprint=fingerprint(human_df), missing_answers=missing_answers,
    )  # fmt: skip


def _validation(
    shared: _Shared, simulator: Simulator, *, resamples: int, progress: bool | None
) -> Validation:
    """One simulator's validation on top of the shared work."""
    plan, human_df, alpha = shared.plan, shared.human_df, shared.alpha
    before = unparseable_counts(simulator)
    samples = simulate_replicates(
        plan, simulator, shared.personas, shared.draws, shared.seeds,
        desc=f"validating {simulator!r}: replicates", enabled=progress,
    )  # fmt: skip
    unparseable = (
        unparseable_counts(simulator) - before
    )  # this validation's answers only
    found = _evaluate(
        plan, shared.human, shared.human_fits, samples, alpha=alpha, subgroups=True,
        reference_failed={
            formula: values["failed_share"] or 0.0
            for formula, values in shared.reference["reference_recovery"].items()
        },
    )  # fmt: skip
    coded = _code(plan, shared.human, human_df, samples)
    # a copy: every simulator's bootstrap draws the same rows
    boot = bootstrap_draws(coded, resamples=resamples, rng=copy.deepcopy(shared.rng))
    return Validation(
        study=plan.study,
        coefficients=found["coefficients"],
        recovery=found["recovery"],
        verdicts=verdict_table(plan, found["recovery"]),
        replicate_coefficients=found["replicate_coefficients"],
        distributions=found["distributions"],
        variance=found["variance"],
        heterogeneity=found["heterogeneity"],
        coherence=found["coherence"],
        shares=item_shares(plan, human_df, samples),
        headline=headline_table(found, shared.references, boot, coded, alpha=alpha),
        draws=boot,
        replicate_metrics=found["replicate_metrics"],
        simulator=repr(simulator),
        n_human=len(human_df),
        reps=len(shared.draws),
        alpha=alpha,
        seed=shared.seed,
        pattern_items=plan.pattern_items,
        min_subgroup_n=plan.min_subgroup_n,
        notes=validation_notes(
            plan,
            shared.reference,
            samples,
            shared.human_fits,
            human_df,
            unparseable=unparseable,
            missing_answers=shared.missing_answers,
        ),
        versions=dict(versions()),
        fingerprint=shared.fingerprint,
    )


def _check_simulator(human_df: pd.DataFrame, simulator: object) -> None:
    """A simulator validate can ask, never trained on these humans."""
    check_no_leakage(human_df, simulator)
    if not callable(getattr(simulator, "simulate", None)):
        raise SimulatorError(
            f"{type(simulator).__name__} has no simulate(personas, items, *, seed)"
        )


def compare(
    simulators: Mapping[str, Simulator],
    human_df: pd.DataFrame,
    study: Study | str,
    *,
    reps: int = 20,
    seed: int | None = 0,
    alpha: float = 0.05,
    subgroups: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Headline numbers of several simulators side by side (``summary_table``).

    Each simulator is validated on the same human data with the same replicate
    personas and bootstrap resamples (same ``seed``), so their differences are paired.
    """
    if not simulators:
        raise OptionError("compare needs at least one simulator")
    validations = validate_each(
        study, human_df, simulators, reps=reps, seed=seed, alpha=alpha,
        subgroups=subgroups,
    )  # fmt: skip
    return summary_table(validations)


def fresh_reference(
    study: Study,
    human_df: pd.DataFrame,
    *,
    reps: int = 20,
    seed: int | np.random.Generator | None = 0,
) -> list[pd.DataFrame]:
    """The fresh-sample reference's ``reps`` replicate samples (persona columns and
    items, declared missing answers blank): what a perfect simulator, one answering like
    new respondents from the human population, would give, with no model of answers.

    A whole-row double bootstrap. One pseudo-population P is drawn: the human rows
    (persona, answers and weight together) resampled uniformly with replacement, whole
    clusters under a cluster covariance. Each replicate is drawn from P as validate
    draws a simulator's replicate from the humans (``draw_rows``: in proportion to the
    survey weights if the study has them; a cluster drawn twice becomes two), and every
    person keeps their own answers. By the bootstrap principle b_P - b_human varies as
    b_human - b_truth does (the humans' estimator, weights and clusters included), and
    b_rep - b_P as a perfect simulator's replicate varies about the truth; so b_rep -
    b_human has about the variance V_human + V_rep of an independent perfect simulator,
    with no matching, for any persona columns, at a cost linear in n.

    Known limit: answer vectors are reused, so a replicate holds fewer distinct answer
    patterns than a fresh sample; for patterns, entropy and incoherence the humans' own
    value is the reference (``results.HEADLINE``).
    """
    if isinstance(reps, bool) or not isinstance(reps, int | np.integer) or reps < 1:
        raise OptionError(f"reps={reps!r} must be an integer of at least 1")
    human_df = study.blank_missing(human_df)
    persona = study.persona_columns_of(human_df)
    cluster = cluster_column(study, persona)
    rng = np.random.default_rng(seed)
    population = _redraw(
        human_df, draw_rows(human_df, rng=rng, cluster=cluster), cluster
    )
    weights = None if study.weight is None else population[study.weight].to_numpy(float)
    columns = [*persona, *study.item_names]
    return [
        _redraw(
            population[columns],
            draw_rows(population, rng=rng, cluster=cluster, weights=weights),
            cluster,
        )
        for _ in range(reps)
    ]


def _redraw(
    frame: pd.DataFrame, positions: np.ndarray, cluster: str | None
) -> pd.DataFrame:
    """The rows of ``frame`` at ``positions`` (from ``draw_rows``), each drawn cluster with a
    new id (``cluster_draw_ids``)."""
    rows = frame.iloc[positions]
    if cluster is None:
        return rows
    return rows.assign(**{cluster: cluster_draw_ids(rows[cluster], positions)})


REFERENCE_REDRAWS = 5
"""How many times ``validate`` may redraw the reference's pseudo-population when a model
the humans fit fails in half its replicates or more (``_unestimable``)."""


def _unestimable(recovery: pd.DataFrame) -> bool:
    """True when a formula the humans could fit failed in half the reference's
    replicates or more."""
    overall = overall_rows(recovery)
    fitted = overall["failure"].fillna("").astype(str) == ""
    return bool((overall.loc[fitted, "failed_share"] >= MAX_FAILED_SHARE).any())


def _evaluate(
    plan: Binding,
    human: Split,
    human_fits: dict[Key, Fit | str],
    samples: list[pd.DataFrame],
    *,
    alpha: float,
    subgroups: bool,
    reference_failed: Mapping[str, float] | None = None,
) -> dict[str, pd.DataFrame]:
    """Every table of a validation for one set of replicate samples.

    ``subgroups=False`` (the reference run) fits the models, and computes the
    variance, heterogeneity and coherence tables, overall only.
    ``reference_failed``: per formula, the share of the fresh reference's replicates
    the model failed in (a perfect simulator's failures are no evidence against one).
    """
    replicates = [split_cells(plan, sample) for sample in samples]
    fits = (
        human_fits
        if subgroups
        else {k: v for k, v in human_fits.items() if k[1] == OVERALL}
    )
    coefficients, recovery, per_rep, by_rep = coefficient_tables(
        plan, human, fits, replicates, alpha=alpha,
        reference_failed=reference_failed or {},
    )  # fmt: skip
    # the reference's headline values read these tables overall only (its subgroup
    # distances do count, in the subgroup JSD gap)
    kept, kept_replicates = (
        (human, replicates)
        if subgroups
        else (overall_only(human), [overall_only(r) for r in replicates])
    )
    return {
        "coefficients": coefficients,
        "recovery": recovery,
        "replicate_coefficients": by_rep,
        "replicate_metrics": per_rep,
        "distributions": distribution_table(plan, human, replicates),
        "variance": variance_table(plan, kept, kept_replicates),
        "heterogeneity": heterogeneity_table(plan, kept, kept_replicates),
        "coherence": coherence_table(plan, kept, kept_replicates),
        "nonresponse": nan_mean(
            [
                sample[list(plan.study.item_names)].isna().to_numpy().mean()
                for sample in samples
            ]
        ),
    }


def _code(
    plan: Binding, human: Split, human_df: pd.DataFrame, samples: list[pd.DataFrame]
) -> Coding:
    """The human data and the replicates coded for the bootstrap."""
    cells = [(s, level) for s in plan.subgroups for level in plan.levels[s]]
    return code_samples(
        plan.study,
        human_df,
        samples,
        cells=cells,
        judged=[len(human[s, str(level)]) >= plan.min_subgroup_n for s, level in cells],
        pattern_items=plan.pattern_items,
        pairs=[pair for pair, _ in coherence_pairs(plan.study.coherence)],
        human_weights=plan.weights(human_df),
        scales=plan.scales,
    )
