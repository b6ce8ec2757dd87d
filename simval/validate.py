"""validate(): would the study reach the same conclusions on simulated respondents?

Orchestration only: it binds the human data to the study once (``binding.bind``, every
check made before any simulator is asked), draws replicate samples of personas, asks
each simulator to answer them, draws the fresh-sample reference's replicates beside
them (``fresh_reference``), fits the study's models and computes every metric on the
human data and on each replicate, overall and per subgroup, resamples respondents for
the metrics' confidence intervals and gathers it all in a ``Validation``. The
statistics live in ``comparison``, ``axes``, ``resampling``, ``regression`` and
``metrics``; the notes in ``notes``; the result, its registry of headline metrics and
the decisions in ``results``.
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
    MIN_SUBGROUP_N,
    Binding,
    Key,
    bind,
    check_no_leakage,
    overall_only,
    overall_rows,
    split_cells,
)
from simval.comparison import coefficient_tables, fit_humans, verdict_table
from simval.errors import SimulatorError, check_alpha, check_count, check_seed, refuse
from simval.metrics import nan_mean
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
    example_prompts,
    identity_of,
    summary_table,
)
from simval.simulators.base import Simulator, StudySimulator
from simval.study import Study

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


def validate(
    formula_or_study: str | Study,
    human_df: pd.DataFrame,
    simulator: Simulator | Mapping[str, Simulator],
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
) -> Validation | dict[str, Validation]:
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

    ``simulator``: one simulator, or a mapping of names to simulators, validated on
    the same humans with the same settings (a dict of Validations by name). What does
    not depend on the simulator is computed once: the human fits, the replicate
    personas and the fresh-sample reference's run, about half of what a validation
    costs beside the simulator. Each result equals that simulator's own call; with one
    seed the replicates and bootstrap resamples are paired across simulators, as
    ``compare`` and leaderboards need.

    Every input is checked, and the human data bound to the study (``bind``), before
    any simulator is asked.

    ``progress``: a bar over the simulator's replicates (plain lines in a log, then a
    summary line with the time taken, ``simval.progress``); ``False`` silences it.
    """
    simulators = dict(simulator) if isinstance(simulator, Mapping) else {"": simulator}
    if not simulators:
        raise refuse(
            "simulator", simulator, "a simulator or a mapping of names to simulators"
        )
    check_count("reps", reps)
    check_count("resamples", resamples, at_least=0)
    check_alpha(alpha)
    check_seed("seed", seed)
    bindings = _bind_each(
        formula_or_study, human_df, simulators, family=family, cov=cov,
        subgroups=subgroups, items=items, min_subgroup_n=min_subgroup_n,
    )  # fmt: skip
    for name, one in simulators.items():
        _check_simulator(bindings[name], one)
    shared: dict[int, _Shared] = {}
    validations = {}
    for name, one in simulators.items():
        binding = bindings[name]
        if id(binding) not in shared:
            shared[id(binding)] = _share(binding, reps=reps, alpha=alpha, seed=seed)
        validations[name] = _validation(
            shared[id(binding)], one, resamples=resamples, progress=progress
        )
    return validations if isinstance(simulator, Mapping) else validations[""]


def validate_each(
    formula_or_study: str | Study,
    human_df: pd.DataFrame,
    simulators: Mapping[str, Simulator],
    **options: Any,
) -> dict[str, Validation]:
    """``validate`` of a mapping of simulators (their Validations by name)."""
    return validate(formula_or_study, human_df, _named(simulators), **options)


def compare(
    simulators: Mapping[str, Simulator],
    human_df: pd.DataFrame,
    study: Study | str,
    **options: Any,
) -> pd.DataFrame:
    """Headline numbers of several simulators side by side (``summary_table``).

    ``validate`` of the mapping with ``options`` (``reps``, ``seed``, ``alpha``,
    ``subgroups``, ...): the same human data, replicate personas and bootstrap
    resamples for every simulator, so their differences are paired.
    """
    return summary_table(validate(study, human_df, _named(simulators), **options))


def _named(simulators: object) -> Mapping[str, Simulator]:
    """``simulators`` if it is a mapping of names to simulators (OptionError if not)."""
    if not isinstance(simulators, Mapping):
        raise refuse("simulators", simulators, "a mapping of names to simulators")
    return simulators


def _bind_each(
    formula_or_study: str | Study,
    human_df: pd.DataFrame,
    simulators: Mapping[str, Simulator],
    **options: Any,
) -> dict[str, Binding]:
    """Each simulator's binding of the humans: a study binds them once; a formula once
    per study it resolves to (an item comes from a simulator's own study where that
    declares one)."""
    if isinstance(formula_or_study, Study):
        return dict.fromkeys(simulators, bind(formula_or_study, human_df, **options))
    made: list[Binding] = []
    bindings = {}
    for name, simulator in simulators.items():
        declared = simulator.study if isinstance(simulator, StudySimulator) else None
        binding = bind(formula_or_study, human_df, declared=declared, **options)
        bindings[name] = next((b for b in made if b.study == binding.study), binding)
        if bindings[name] is binding:
            made.append(binding)
    return bindings


@dataclass(frozen=True)
class _Shared:
    """What a validation computes before asking the simulator: the same for every
    simulator validated on these humans with these settings."""

    binding: Binding
    human_fits: dict[Key, Fit | str]
    draws: list[np.ndarray]
    seeds: np.ndarray
    reference: dict[str, Any]  # the notes about the reference (``reference_notes``)
    references: dict[str, float]  # the headline values of the reference's run
    rng: np.random.Generator  # in the state the bootstrap starts from
    alpha: float
    seed: int | None


def _share(binding: Binding, *, reps: int, alpha: float, seed: int | None) -> _Shared:
    """The human fits, the replicate draws and the fresh-sample reference's run."""
    human_fits = fit_humans(binding, alpha=alpha)
    rng = np.random.default_rng(seed)
    weights = binding.weights(binding.human)
    draws = [
        draw_rows(binding.personas, rng=rng, cluster=binding.cluster, weights=weights)
        for _ in range(reps)
    ]
    seeds = rng.integers(2**63, size=reps)
    # A pseudo-population on which a model the humans fit fails in half the replicates
    # or more (a rare level separating a logit) is redrawn: the truth a perfect
    # simulator samples is no such population. The notes count the redraws.
    reference_rng = np.random.default_rng(rng.integers(2**63))
    for redraws in range(REFERENCE_REDRAWS + 1):
        reference_samples = _fresh_samples(binding, reps=reps, rng=reference_rng)
        fresh = _evaluate(
            binding, human_fits, reference_samples, alpha=alpha, subgroups=False
        )
        if not _unestimable(fresh["recovery"]):
            break
    return _Shared(
        binding=binding, human_fits=human_fits, draws=draws, seeds=seeds,
        reference=reference_notes(fresh["recovery"], redraws=redraws),
        references=point_values(fresh, _code(binding, reference_samples)), rng=rng,
        alpha=alpha, seed=seed,
    )  # fmt: skip


def _validation(
    shared: _Shared, simulator: Simulator, *, resamples: int, progress: bool | None
) -> Validation:
    """One simulator's validation on top of the shared work."""
    binding, alpha = shared.binding, shared.alpha
    before = unparseable_counts(simulator)
    samples = simulate_replicates(
        binding, simulator, binding.personas, shared.draws, shared.seeds,
        desc=f"validating {simulator!r}: replicates", enabled=progress,
    )  # fmt: skip
    unparseable = (
        unparseable_counts(simulator) - before
    )  # this validation's answers only
    found = _evaluate(
        binding, shared.human_fits, samples, alpha=alpha, subgroups=True,
        reference_failed={
            formula: values["failed_share"] or 0.0
            for formula, values in shared.reference["reference_recovery"].items()
        },
    )  # fmt: skip
    coded = _code(binding, samples)
    # a copy: every simulator's bootstrap draws the same rows
    boot = bootstrap_draws(coded, resamples=resamples, rng=copy.deepcopy(shared.rng))
    return Validation(
        study=binding.study,
        coefficients=found["coefficients"],
        recovery=found["recovery"],
        verdicts=verdict_table(binding, found["recovery"]),
        replicate_coefficients=found["replicate_coefficients"],
        distributions=found["distributions"],
        variance=found["variance"],
        heterogeneity=found["heterogeneity"],
        coherence=found["coherence"],
        shares=item_shares(binding, samples),
        headline=headline_table(found, shared.references, boot, coded, alpha=alpha),
        draws=boot,
        replicate_metrics=found["replicate_metrics"],
        simulator=repr(simulator),
        n_human=len(binding.human),
        reps=len(shared.draws),
        alpha=alpha,
        seed=shared.seed,
        pattern_items=binding.pattern_items,
        min_subgroup_n=binding.min_subgroup_n,
        notes=validation_notes(
            binding,
            shared.reference,
            samples,
            shared.human_fits,
            unparseable=unparseable,
        ),
        versions=dict(versions()),
        fingerprint=binding.fingerprint,
        identity=identity_of(simulator),
        prompts=example_prompts(simulator, binding.personas, binding.study.items),
    )


def _check_simulator(binding: Binding, simulator: object) -> None:
    """A simulator validate can ask, never trained on these humans."""
    check_no_leakage(binding.human, simulator)
    if not callable(getattr(simulator, "simulate", None)):
        raise SimulatorError(
            f"{type(simulator).__name__} has no simulate(personas, items, *, seed)"
        )


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
    value is the reference (``headline.HEADLINE``).
    """
    check_count("reps", reps)
    check_seed("seed", seed)
    binding = bind(study, human_df, subgroups=())
    return _fresh_samples(binding, reps=reps, rng=np.random.default_rng(seed))


def _fresh_samples(
    binding: Binding, *, reps: int, rng: np.random.Generator
) -> list[pd.DataFrame]:
    """``fresh_reference``'s replicates of the bound humans, drawn with ``rng``."""
    human, cluster = binding.human, binding.cluster
    population = _redraw(human, draw_rows(human, rng=rng, cluster=cluster), cluster)
    columns = [*binding.persona_columns, *binding.study.item_names]
    weights = binding.weights(population)
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
    binding: Binding,
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
    human = binding.cells
    replicates = [split_cells(binding, sample) for sample in samples]
    fits = (
        human_fits
        if subgroups
        else {k: v for k, v in human_fits.items() if k[1] == OVERALL}
    )
    coefficients, recovery, per_rep, by_rep = coefficient_tables(
        binding, fits, replicates, alpha=alpha, reference_failed=reference_failed or {}
    )
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
        "distributions": distribution_table(binding, human, replicates),
        "variance": variance_table(binding, kept, kept_replicates),
        "heterogeneity": heterogeneity_table(binding, kept, kept_replicates),
        "coherence": coherence_table(binding, kept, kept_replicates),
        "nonresponse": nan_mean(
            [
                sample[list(binding.study.item_names)].isna().to_numpy().mean()
                for sample in samples
            ]
        ),
    }


def _code(binding: Binding, samples: list[pd.DataFrame]) -> Coding:
    """The human data and the replicates coded for the bootstrap."""
    cells = [(s, level) for s in binding.subgroups for level in binding.levels[s]]
    return code_samples(
        binding.study,
        binding.human,
        samples,
        cells=cells,
        judged=[
            len(binding.cells[s, str(level)]) >= binding.min_subgroup_n
            for s, level in cells
        ],
        pattern_items=binding.pattern_items,
        pairs=[pair for pair, _ in coherence_pairs(binding.study.coherence)],
        human_weights=binding.weights(binding.human),
        scales=binding.scales,
    )
