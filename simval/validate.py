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
import dataclasses
import hashlib
import math
import re
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from simval.bootstrap import Coding, code_samples, headline_draws, replicate_values
from simval.errors import (
    DataError,
    EstimationError,
    FormulaError,
    OptionError,
    SimulatorError,
    StudyError,
    check_option,
)
from simval.families import (
    CATEGORICAL_FAMILIES,
    CLUSTER_PREFIX,
    FAMILIES,
    check_cov,
)
from simval.metrics import (
    TERM_COLUMNS,
    NumberScale,
    Recovery,
    WaldTest,
    coefficient_recovery,
    equivalence_limit,
    geometric_mean,
    heterogeneity,
    incoherence_flags_each,
    jsd,
    nonresponse_scale,
    variance_ratio,
    wald_equality,
    wasserstein,
    weighted_mean,
    weighted_variance,
)
from simval.progress import progress as progress_bar
from simval.regression import Fit, fit
from simval.results import (
    HEADLINE,
    HUMAN_LEVELS,
    MAX_FAILED_SHARE,
    METRICS,
    NOT_FINDINGS,
    OVERALL,
    UNDETERMINED,
    Validation,
    decide,
    is_finding,
    summary_table,
)
from simval.simulators.base import Simulator, check_output
from simval.study import (
    Coherence,
    Item,
    Model,
    Number,
    Study,
    check_codes,
    formula_variables,
    outcome_of,
    plain_number,
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

MIN_EVENTS_PER_PARAMETER = 10
"""A binary-outcome model's cell is also ``small`` when its rarer outcome has fewer than
this many cases per coefficient (Peduzzi et al. 1996, events per variable)."""

MAX_OBSERVED_OPTIONS = 11
"""In formula mode a column with more distinct values than this (or any value that is
not a whole number) is an open number item, not a list of options; so is the outcome of
a linear model with more than two values or of a count model (``_observed_item``)."""

FEW_CLUSTERS = 30
"""Cluster-robust errors with fewer clusters are unreliable; the notes warn."""

LATENT_SD = {
    "logit": math.pi / math.sqrt(3),
    "probit": 1.0,
    "poisson": 1.0,
    "mnlogit": math.pi / math.sqrt(3),
    "ologit": math.pi / math.sqrt(3),
    "oprobit": 1.0,
}
"""The outcome scale a standardised margin is multiplied by, per non-linear family."""


@dataclass(frozen=True)
class _Plan:
    """Everything validate needs, resolved and checked before any work starts."""

    study: Study
    subgroups: tuple[str, ...]
    levels: dict[str, tuple[Any, ...]]
    persona_columns: tuple[str, ...]
    pattern_items: tuple[str, ...]
    categorical_items: tuple[Item, ...]
    labelled_outcomes: tuple[Item, ...]
    cluster: str | None
    min_subgroup_n: int
    weight: str | None  # the study's survey-weight column
    scales: dict[str, NumberScale]  # per number item, how its answers are compared

    def weights(self, rows: pd.DataFrame) -> np.ndarray | None:
        """The survey weights of human ``rows`` (None when the study has none)."""
        return None if self.weight is None else rows[self.weight].to_numpy(float)


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
    plan = _plan(
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
        name: _plan(
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

    plan: _Plan
    human_df: pd.DataFrame
    human: Split
    human_fits: dict[Key, Fit | str]
    personas: pd.DataFrame
    draws: list[np.ndarray]
    seeds: np.ndarray
    reference: dict[str, Any]  # the notes about the reference (``_reference_notes``)
    references: dict[str, float]  # the headline values of the reference's run
    rng: np.random.Generator  # in the state the bootstrap starts from
    alpha: float
    seed: int | None
    fingerprint: str
    missing_answers: str | None  # Study.missing_answers_note of the raw human data


def _share(
    plan: _Plan, human_df: pd.DataFrame, *, reps: int, alpha: float, seed: int | None
) -> _Shared:
    """The human fits, the replicate draws and the fresh-sample reference's run; the
    humans' declared missing answers are blanked first (``Study.blank_missing``)."""
    missing_answers = plan.study.missing_answers_note(human_df)
    human_df = plan.study.blank_missing(human_df)
    human = _split(plan, human_df)
    human_fits = _human_fits(plan, human, alpha=alpha)
    rng = np.random.default_rng(seed)
    personas = human_df[list(plan.persona_columns)]
    weights = plan.weights(human_df)
    draws = [
        _draw(personas, rng=rng, cluster=plan.cluster, weights=weights)
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
        reference=_reference_notes(fresh["recovery"], redraws=redraws),
        references=_point(fresh), rng=rng, alpha=alpha, seed=seed,
        fingerprint=fingerprint(human_df), missing_answers=missing_answers,
    )  # fmt: skip


def _validation(
    shared: _Shared, simulator: Simulator, *, resamples: int, progress: bool | None
) -> Validation:
    """One simulator's validation on top of the shared work."""
    plan, human_df, alpha = shared.plan, shared.human_df, shared.alpha
    before = _unparseable(simulator)
    samples = _replicates(
        plan, simulator, shared.personas, shared.draws, shared.seeds,
        desc=f"validating {simulator!r}: replicates", enabled=progress,
    )  # fmt: skip
    unparseable = _unparseable(simulator) - before  # this validation's answers only
    found = _evaluate(
        plan, shared.human, shared.human_fits, samples, alpha=alpha, subgroups=True,
        reference_failed={
            formula: values["failed_share"] or 0.0
            for formula, values in shared.reference["reference_recovery"].items()
        },
    )  # fmt: skip
    coded = _code(plan, shared.human, human_df, samples)
    # a copy: every simulator's bootstrap draws the same rows
    boot = _bootstrap(coded, resamples=resamples, rng=copy.deepcopy(shared.rng))
    return Validation(
        study=plan.study,
        coefficients=found["coefficients"],
        recovery=found["recovery"],
        verdicts=_verdicts(plan, found["recovery"]),
        replicate_coefficients=found["replicate_coefficients"],
        distributions=found["distributions"],
        variance=found["variance"],
        heterogeneity=found["heterogeneity"],
        coherence=found["coherence"],
        shares=_shares(plan, human_df, samples),
        headline=_headline(found, shared.references, boot, coded, alpha=alpha),
        draws=boot,
        replicate_metrics=found["replicate_metrics"],
        simulator=repr(simulator),
        n_human=len(human_df),
        reps=len(shared.draws),
        alpha=alpha,
        seed=shared.seed,
        pattern_items=plan.pattern_items,
        min_subgroup_n=plan.min_subgroup_n,
        notes=_notes(
            plan,
            shared.reference,
            samples,
            shared.human_fits,
            human_df,
            unparseable=unparseable,
            missing_answers=shared.missing_answers,
        ),
        versions=dict(_versions()),
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
    draws a simulator's replicate from the humans (``_draw``: in proportion to the
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
    cluster = _cluster(study, persona)
    rng = np.random.default_rng(seed)
    population = _redraw(human_df, _draw(human_df, rng=rng, cluster=cluster), cluster)
    weights = None if study.weight is None else population[study.weight].to_numpy(float)
    columns = [*persona, *study.item_names]
    return [
        _redraw(
            population[columns],
            _draw(population, rng=rng, cluster=cluster, weights=weights),
            cluster,
        )
        for _ in range(reps)
    ]


def _redraw(
    frame: pd.DataFrame, positions: np.ndarray, cluster: str | None
) -> pd.DataFrame:
    """The rows of ``frame`` at ``positions`` (from ``_draw``), each drawn cluster with a
    new id (``_cluster_draw_ids``)."""
    rows = frame.iloc[positions]
    if cluster is None:
        return rows
    return rows.assign(**{cluster: _cluster_draw_ids(rows[cluster], positions)})


REFERENCE_REDRAWS = 5
"""How many times ``validate`` may redraw the reference's pseudo-population when a model
the humans fit fails in half its replicates or more (``_unestimable``)."""


def _unestimable(recovery: pd.DataFrame) -> bool:
    """True when a formula the humans could fit failed in half the reference's
    replicates or more."""
    overall = _overall(recovery)
    fitted = overall["failure"].fillna("").astype(str) == ""
    return bool((overall.loc[fitted, "failed_share"] >= MAX_FAILED_SHARE).any())


def _reference_notes(recovery: pd.DataFrame, *, redraws: int) -> dict[str, Any]:
    """The notes about the reference: what it is (``reference``), how many of its
    pseudo-populations were redrawn (``reference_redraws``) and, per formula, its
    difference-CI coverage, false-positive rate, Wald p-value and share of failed
    replicates overall (``reference_recovery``, None where undefined, so the notes
    survive JSON), which a perfect simulator shares in expectation."""
    overall = _overall(recovery)
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


def fingerprint(human_df: pd.DataFrame) -> str:
    """SHA-256 of the human data (index, columns and values as CSV): which humans a
    validation was computed on, so validations of different data are never ranked together."""
    return hashlib.sha256(human_df.to_csv().encode("utf-8")).hexdigest()


# --- planning and input checks -------------------------------------------------------


def _plan(
    formula_or_study: str | Study,
    human_df: pd.DataFrame,
    *,
    declared: Study | None,
    family: str,
    cov: str,
    subgroups: Sequence[str] | None,
    items: Sequence[str] | None,
    reps: int,
    alpha: float,
    resamples: int,
    min_subgroup_n: int,
) -> _Plan:
    """Resolve the study, check every input against the human data, and fix the subgroup levels."""
    for name, value, low in (
        ("reps", reps, 1),
        ("resamples", resamples, 0),
        ("min_subgroup_n", min_subgroup_n, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise OptionError(f"{name}={value!r} must be an integer of at least {low}")
    if not 0 < alpha < 1:
        raise OptionError(f"alpha={alpha!r} must lie strictly between 0 and 1")
    if not isinstance(human_df, pd.DataFrame) or human_df.empty:
        raise DataError("the human data is empty")
    if not human_df.index.is_unique:
        raise DataError(
            "the human data's index is not unique; reset it before validating"
        )
    if isinstance(formula_or_study, Study):
        if (family, cov, items) != ("ols", "HC1", None):
            raise OptionError(
                "family, cov and items come from the study; leave them unset"
            )
        study = formula_or_study
        study.check_data(human_df)
    else:
        study = formula_study(
            formula_or_study,
            human_df,
            declared=declared,
            family=family,
            cov=cov,
            items=items,
        )
    subgroups = tuple(study.subgroups if subgroups is None else subgroups)
    persona_columns = study.persona_columns_of(human_df)
    missing = [c for c in subgroups if c not in persona_columns]
    if missing:
        raise DataError(
            f"subgroup column(s) {', '.join(missing)} are not persona columns of the human data"
        )
    beliefs = study.items_with_role("belief")
    return _Plan(
        study=study,
        subgroups=subgroups,
        levels={s: _levels(human_df[s], subgroup=s) for s in subgroups},
        persona_columns=persona_columns,
        pattern_items=tuple(i.name for i in beliefs) or study.item_names,
        categorical_items=categorical_items(study),
        labelled_outcomes=labelled_outcomes(study),
        cluster=_cluster(study, persona_columns),
        min_subgroup_n=min_subgroup_n,
        weight=study.weight,
        scales=_number_scales(study, study.blank_missing(human_df)),
    )


def _number_scales(study: Study, human_df: pd.DataFrame) -> dict[str, NumberScale]:
    """Each number item's ``NumberScale``, from its declared scale and the human answers;
    a number item cannot be a factor or a categorical outcome (it has no levels)."""
    numbers = [item for item in study.items if item.is_number]
    leveled = {i.name for i in (*categorical_items(study), *labelled_outcomes(study))}
    for item in numbers:
        if item.name in leveled:
            raise StudyError(
                f"item {item.name!r} is a number item; a formula cannot use it as a "
                "factor (C(...)) or as the outcome of a categorical family"
            )
    return {
        item.name: NumberScale.of(
            human_df[item.name],
            low=item.number.min,
            high=item.number.max,
            whole=item.number.whole,
        )
        for item in numbers
    }


def categorical_items(study: Study) -> tuple[Item, ...]:
    """Items a formula treats as a factor (``C(item)``): fitted with the declared options
    as levels, so every sample is estimated on the same contrasts."""
    return tuple(
        item
        for item in study.items
        if any(
            re.search(rf"\bC\(\s*`?{re.escape(item.name)}\b", m.formula)
            for m in study.models
        )
    )


def labelled_outcomes(study: Study) -> tuple[Item, ...]:
    """Items that are the outcome of a multinomial or ordered model: fitted as their
    option labels in the declared order, so coefficients name a level by its label
    (``x | vote=Labour``), the first option is mnlogit's reference and the options'
    order is an ordered model's."""
    outcomes = {m.outcome for m in study.models if m.family in CATEGORICAL_FAMILIES}
    return tuple(item for item in study.items if item.name in outcomes)


def _cluster(study: Study, persona_columns: Sequence[str]) -> str | None:
    """The column the models cluster on (replicates resample its clusters), if any."""
    columns = {
        m.cov.removeprefix(CLUSTER_PREFIX)
        for m in study.models
        if m.cov.startswith(CLUSTER_PREFIX)
    }
    if len(columns) > 1:
        raise OptionError(
            f"the models cluster on different columns ({', '.join(sorted(columns))}); "
            "replicates can resample one clustering only"
        )
    column = next(iter(columns), None)
    if column is not None and column not in persona_columns:
        raise DataError(
            f"cluster column {column!r} is not a persona column of the human data"
        )
    return column


def check_no_leakage(human_df: pd.DataFrame, simulator: object) -> None:
    """Refuse to evaluate a fine-tuned simulator on respondents it was trained on."""
    trained = getattr(simulator, "training_index", ())
    seen = human_df.index[human_df.index.isin(list(trained))]
    if len(seen):
        shown = ", ".join(repr(label) for label in seen[:5])
        raise DataError(
            f"{len(seen)} respondent(s) of the human data were in the fine-tuning pilot of "
            f"{simulator!r} (e.g. {shown}); evaluate on held-out respondents only"
        )


def formula_study(
    formula: str,
    human_df: pd.DataFrame,
    *,
    declared: Study | None,
    family: str,
    cov: str,
    items: Sequence[str] | None,
) -> Study:
    """A one-model study of the outcome and ``items``.

    Each item is the one the simulator's own study declares under that name (its
    question and options, which an LLM simulator needs), or else one observed in the
    human data (``_observed_item``).
    """
    check_option("family", family, FAMILIES)
    check_cov(cov)
    missing = sorted(formula_variables(formula) - set(human_df.columns))
    if missing:
        raise FormulaError(
            f"formula {formula!r} names column(s) not in the human data: {', '.join(missing)}"
        )
    names = list(dict.fromkeys([outcome_of(formula), *(items or ())]))
    absent = [n for n in names if n not in human_df.columns]
    if absent:
        raise DataError(
            f"item(s) {', '.join(absent)} are not columns of the human data"
        )
    known = set(declared.item_names) if isinstance(declared, Study) else set()
    outcome = human_df[names[0]]
    numbered = family == "poisson" or (family == "ols" and outcome.nunique() > 2)
    chosen = tuple(
        declared.item(name)
        if name in known
        else _observed_item(human_df[name], number=numbered and name == names[0])
        for name in names
    )
    check_codes(human_df, chosen, what="the human data")
    persona = tuple(c for c in human_df.columns if c not in names)
    return Study(items=chosen, persona=persona, models=(Model(formula, family, cov),))


def _observed_item(column: pd.Series, *, number: bool) -> Item:
    """The item of a human column in formula mode, where nothing declares its scale.

    The outcome of a linear or count model (``number``) is an open number item, whole
    if its values are, so a simulator's answer the humans never gave (a 3 on a 0-10
    scale nobody chose, a count above theirs, a new continuous value) is compared, not
    refused; so is a column of more than ``MAX_OBSERVED_OPTIONS`` distinct values, or
    of numbers that are not all whole. Any other column's options are the humans'
    values: a factor's or a categorical outcome's levels, an item's answers as a
    scoring simulator ranks them.
    """
    values = pd.to_numeric(column.dropna(), errors="coerce")
    if values.isna().any() or not len(values):
        raise DataError(
            f"item {column.name!r} must hold numeric answer codes (got {column.dtype} values)"
        )
    codes = sorted(set(values.astype(float).tolist()))
    whole = all(float(c).is_integer() for c in codes)
    if number or len(codes) > MAX_OBSERVED_OPTIONS or not whole:
        return Item(
            name=str(column.name), text=str(column.name), number=Number(whole=whole)
        )
    return Item(
        name=str(column.name),
        text=str(column.name),
        options={f"{c:g}": int(c) if float(c).is_integer() else c for c in codes},
    )


def _levels(column: pd.Series, *, subgroup: str) -> tuple[Any, ...]:
    """The subgroup's levels in the human data; an empty declared level is an error."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        counts = column.value_counts(sort=False)
        empty = [str(level) for level, n in counts.items() if n == 0]
        if empty:
            raise DataError(
                f"subgroup {subgroup!r} has level(s) with no human respondents: {', '.join(empty)}"
            )
        return tuple(counts.index)
    levels = tuple(sorted(column.dropna().unique(), key=str))
    if not levels:
        raise DataError(
            f"subgroup {subgroup!r} has no non-missing values in the human data"
        )
    return levels


# --- replicate samples --------------------------------------------------------------------


def _draw(
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


def _replicates(
    plan: _Plan,
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
        answers = simulator.simulate(drawn, plan.study.items, seed=seed)
        answers = check_output(
            answers, personas=drawn, items=plan.study.items, simulator=simulator
        )
        # a declared non-answer (a resampled human's "don't know") is a missing answer
        sample = pd.concat([drawn, plan.study.blank_missing(answers)], axis=1)
        if plan.cluster is not None:
            sample[plan.cluster] = _cluster_draw_ids(drawn[plan.cluster], positions)
        samples.append(sample)
    return samples


def _cluster_draw_ids(clusters: pd.Series, positions: np.ndarray) -> np.ndarray:
    """A new id per drawn cluster. ``_draw`` takes a cluster's rows in increasing order,
    so a draw starts where the cluster changes or the positions stop increasing (a
    cluster drawn twice in a row is two clusters, not one of twice the size)."""
    values = clusters.to_numpy()
    starts = np.r_[True, (values[1:] != values[:-1]) | (np.diff(positions) <= 0)]
    return np.cumsum(starts)


# --- splitting into (subgroup, level) groups ---------------------------------------

Group = tuple[str, str]
"""(subgroup, level); ``(OVERALL, OVERALL)`` for all respondents."""
Key = tuple[str, str, str]
"""(formula, subgroup, level)."""
Split = dict[Group, pd.DataFrame]


def _split(plan: _Plan, df: pd.DataFrame) -> Split:
    """All respondents, then the rows of every level of every subgroup (levels as strings)."""
    return {
        group: df if group == (OVERALL, OVERALL) else df[mask]
        for group, mask in _masks(plan, df).items()
    }


def _masks(plan: _Plan, df: pd.DataFrame) -> dict[Group, np.ndarray]:
    """Which rows of ``df`` each group holds, in ``_split``'s order."""
    masks = {(OVERALL, OVERALL): np.ones(len(df), dtype=bool)}
    for subgroup in plan.subgroups:
        for level in plan.levels[subgroup]:
            masks[subgroup, str(level)] = (df[subgroup] == level).to_numpy(
                dtype=bool, na_value=False
            )
    return masks


def _evaluate(
    plan: _Plan,
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
    replicates = [_split(plan, sample) for sample in samples]
    fits = (
        human_fits
        if subgroups
        else {k: v for k, v in human_fits.items() if k[1] == OVERALL}
    )
    coefficients, recovery, per_rep, by_rep = _coefficients(
        plan, human, fits, replicates, alpha=alpha,
        reference_failed=reference_failed or {},
    )  # fmt: skip
    # the reference's headline values read these tables overall only (its subgroup
    # distances do count, in the subgroup JSD gap)
    kept, kept_replicates = (
        (human, replicates)
        if subgroups
        else (_overall_only(human), [_overall_only(r) for r in replicates])
    )
    return {
        "coefficients": coefficients,
        "recovery": recovery,
        "replicate_coefficients": by_rep,
        "replicate_metrics": per_rep,
        "distributions": _distributions(plan, human, replicates),
        "variance": _variance(plan, kept, kept_replicates),
        "heterogeneity": _heterogeneity(plan, kept, kept_replicates),
        "coherence": _coherence(plan, kept, kept_replicates),
        "nonresponse": _mean(
            [
                sample[list(plan.study.item_names)].isna().to_numpy().mean()
                for sample in samples
            ]
        ),
    }


def _code(
    plan: _Plan, human: Split, human_df: pd.DataFrame, samples: list[pd.DataFrame]
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
        pairs=[pair for pair, _ in _pairs(plan.study.coherence)],
        human_weights=plan.weights(human_df),
        scales=plan.scales,
    )


# --- coefficients -------------------------------------------------------------------


def _for_fit(plan: _Plan, rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with each factor item as a categorical of its declared options, so the
    humans and every replicate share levels and reference level, and each categorical
    outcome as its labels (``labelled_outcomes``)."""
    if not (plan.categorical_items or plan.labelled_outcomes):
        return rows
    factors = {
        item.name: pd.Categorical(rows[item.name], categories=list(item.codes))
        for item in plan.categorical_items
    }
    outcomes = {
        item.name: pd.Categorical(
            rows[item.name].map(dict(zip(item.codes, item.labels))),
            categories=list(item.labels),
            ordered=True,
        )
        for item in plan.labelled_outcomes
    }
    return rows.assign(**factors, **outcomes)


def _human_fits(plan: _Plan, human: Split, *, alpha: float) -> dict[Key, Fit | str]:
    """The human fit of every model in every group, or the reason it cannot be estimated.

    The overall human fit must succeed: if the study's own model cannot be estimated
    on the human data, that is an error in the input, raised here.
    """
    fits: dict[Key, Fit | str] = {}
    for model in plan.study.models:
        for (subgroup, level), rows in human.items():
            try:
                fits[model.formula, subgroup, level] = fit(
                    model.formula,
                    _for_fit(plan, rows),
                    family=model.family,
                    cov=model.cov,
                    weights=plan.weight,
                    conf_level=1 - alpha,
                )
            except (EstimationError, DataError) as exc:
                if subgroup == OVERALL:
                    raise
                fits[model.formula, subgroup, level] = str(exc)
    return fits


def check_human_models(study: Study, human_df: pd.DataFrame) -> None:
    """Raise what ``validate`` would raise on these humans before it asks a simulator
    anything: bad data, or a model of the study that cannot be estimated on them
    (overall), so a long run fails at once instead of after hours of work."""
    plan = _plan(
        study, human_df, declared=None, family="ols", cov="HC1", subgroups=(),
        items=None, reps=1, alpha=0.05, resamples=0, min_subgroup_n=1,
    )  # fmt: skip
    _human_fits(plan, {(OVERALL, OVERALL): study.blank_missing(human_df)}, alpha=0.05)


def _coefficients(
    plan: _Plan,
    people: Split,
    human_fits: dict[Key, Fit | str],
    replicates: list[Split],
    *,
    alpha: float,
    reference_failed: Mapping[str, float],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-term comparisons, per-group recovery and tests, per-replicate scores and fits
    (``reference_failed``: see ``_evaluate``; it concerns the overall groups)."""
    models = {m.formula: m for m in plan.study.models}
    term_frames, rows, scores, by_rep = [], [], [], []
    for key, human in human_fits.items():
        formula, subgroup, level = key
        row = {"formula": formula, "subgroup": subgroup, "level": level}
        if isinstance(human, str):
            rows.append(
                {
                    **row,
                    "n_human": len(people[subgroup, level]),
                    "n_terms": 0,
                    "small": True,
                    "decision": UNDETERMINED,
                    "reason": f"the human model cannot be estimated here ({human})",
                    "failure": human,
                }
            )
            continue
        samples = [r[subgroup, level] for r in replicates]
        refits = _refits(plan, human, samples)
        margin = models[formula].margin
        recovery, wald = _compare(
            human, refits, margin=margin, alpha=alpha,
            answerable=[
                _answerable(models[formula], rows, items=plan.study.item_names)
                for rows in samples
            ],
        )  # fmt: skip
        sim_nobs = [r.nobs if isinstance(r, Fit) else 0 for r, _ in refits]
        terms = recovery.terms.assign(
            equivalence_limit=_limits(recovery.terms, human, alpha=alpha)
        )
        judged = terms[terms["term"].isin(wald.terms)]
        equivalence = (
            float(judged["equivalence_p_value"].max(skipna=False))
            if len(judged)
            else math.nan
        )
        reach = _reach(judged, human, margin=margin, alpha=alpha)
        failed_share = 1 - wald.n_reps / len(refits)
        decision, reason = decide(
            n_terms=len(wald.terms), failed_share=failed_share,
            wald_p_value=wald.p_value, equivalence_p_value=equivalence, alpha=alpha,
            margin=margin, wald_method=wald.method,
            reference_failed_share=reference_failed.get(formula, 0.0)
            if subgroup == OVERALL
            else 0.0,
            **reach,
        )  # fmt: skip
        failures = Counter(pair for _, reasons in refits for pair in reasons)
        term_frames.append(
            terms.assign(
                formula=formula, subgroup=subgroup, level=level,
                failure=[_commonest(failures, t) for t in terms["term"]],
            )
        )  # fmt: skip
        rows.append(
            {
                **row,
                "n_human": len(people[subgroup, level]),
                "nobs_human": human.nobs,
                # rows the fitted replicates used (failed ones are in failed_share)
                "nobs_sim": _mean([n for n in sim_nobs if n > 0]),
                "small": subgroup != OVERALL
                and _small(plan, models[formula], human, people[subgroup, level]),
                "n_terms": len(wald.terms),
                "sign_f1": recovery.sign_f1,
                "false_positive_rate": recovery.false_positive_rate,
                "coverage": recovery.coverage,
                "wald_statistic": wald.statistic,
                "wald_df": wald.df,
                "wald_denominator_df": wald.denominator_df,
                "wald_method": wald.method,
                "wald_p_value": wald.p_value,
                "equivalence_p_value": equivalence,
                **reach,
                "decision": decision,
                "reason": reason,
                "failed_share": failed_share,
                "failure": "",
            }
        )
        if subgroup == OVERALL:
            scores.append(recovery.replicates.assign(formula=formula))
            by_rep.extend(_replicate_rows(formula, refits))
    coefficients = (
        pd.concat(term_frames, ignore_index=True)
        if term_frames
        else pd.DataFrame(columns=COEFFICIENT_COLUMNS)
    )[COEFFICIENT_COLUMNS]
    per_rep = (
        _long(pd.concat(scores).groupby("rep")[list(REPLICATE_SCORES)].mean())
        if scores
        else pd.DataFrame(columns=["rep", "metric", "value"])
    )
    by_rep_frame = pd.DataFrame(
        by_rep,
        columns=["rep", "formula", "term", "estimate", "std_error", "p_value", "nobs"],
    )
    return (
        coefficients,
        _adjusted(
            pd.DataFrame(rows, columns=RECOVERY_COLUMNS),
            alpha=alpha,
            min_n=plan.min_subgroup_n,
            margins={m.formula: m.margin for m in plan.study.models},
        ),
        per_rep,
        by_rep_frame,
    )


REPLICATE_SCORES = ("sign_f1", "false_positive_rate", "coverage")
"""The coefficient scores ``replicate_metrics`` holds per replicate."""


def _long(means: pd.DataFrame) -> pd.DataFrame:
    """(rep, metric, value) rows, a metric's replicates together: ``melt`` of the
    per-replicate means, built directly (melt costs more than the rest of the table)."""
    reps, metrics = means.index.to_numpy(), list(means.columns)
    return pd.DataFrame(
        {
            "rep": np.tile(reps, len(metrics)),
            "metric": np.repeat(metrics, len(reps)),
            "value": means.to_numpy().T.ravel(),
        }
    )


COEFFICIENT_COLUMNS = [
    "formula", "subgroup", "level", *TERM_COLUMNS, "equivalence_limit", "failure",
]  # fmt: skip
"""The columns of ``Validation.coefficients``."""

RECOVERY_COLUMNS = [
    "formula", "subgroup", "level", "n_human", "nobs_human", "nobs_sim", "small",
    "n_terms", "sign_f1", "false_positive_rate", "coverage", "wald_statistic",
    "wald_df", "wald_denominator_df", "wald_method", "wald_p_value", "wald_p_adjusted",
    "equivalence_p_value", "equivalence_p_adjusted", "equivalence_bound",
    "consistent_attainable", "humans_needed", "limiting_term", "decision", "reason", "failed_share",
    "failure",
]  # fmt: skip


def _compare(
    human: Fit,
    refits: list[tuple[Fit | None, list]],
    *,
    margin: float,
    alpha: float,
    answerable: Sequence[int],
) -> tuple[Recovery, WaldTest]:
    """The per-term comparison and the joint Wald test of one group's replicate fits
    against the human fit, each replicate's nonresponse scaled to the rows it would
    have used had the simulator answered every persona (``answerable``: under cluster
    resampling replicates differ in size, which is sampling noise, not nonresponse)."""
    margins = _margins(human, margin=margin)
    dfs = human.satterthwaite_df.to_dict()
    sim_nobs = [r.nobs if isinstance(r, Fit) else 0 for r, _ in refits]
    empty = human.table.iloc[0:0]
    recovery = coefficient_recovery(
        human.table,
        [r.table if isinstance(r, Fit) else empty for r, _ in refits],
        alpha=alpha,
        exclude=[t for t in human.table["term"] if not is_finding(t)],
        margins=margins,
        dfs=dfs,
        human_nobs=answerable,
        sim_nobs=sim_nobs,
    )
    wald = wald_equality(
        human_estimate=_estimates(human),
        human_vcov=human.vcov,
        sim_estimates=[_estimates(r) for r, _ in refits],
        sim_vcovs=[r.vcov if isinstance(r, Fit) else pd.DataFrame() for r, _ in refits],
        terms=[t for t in human.table["term"] if is_finding(t) and t in margins],
        scales=nonresponse_scale(answerable, sim_nobs, reps=len(refits)),
        denominator_df=human.wald_df,
    )
    return recovery, wald


def _answerable(model: Model, rows: pd.DataFrame, *, items: Sequence[str]) -> int:
    """The rows a replicate's fit could use had the simulator answered them all: those
    with every persona variable of the model's formula present (the items are the
    simulator's to answer)."""
    inputs = sorted(formula_variables(model.formula) - set(items))
    return int(rows[inputs].notna().all(axis=1).sum()) if inputs else len(rows)


def _refits(
    plan: _Plan, human: Fit, samples: list[pd.DataFrame]
) -> list[tuple[Fit | None, list[tuple[str, str]]]]:
    """Each replicate's fit (None when it failed) and the (term, reason) of each failed
    term, all refitted in one go (``Fit.refit_many`` shares the design work). A
    replicate is unweighted: its personas were drawn in proportion to the weights."""
    unweighted = dataclasses.replace(human, weights=None)
    out = []
    for refitted in unweighted.refit_many([_for_fit(plan, rows) for rows in samples]):
        if isinstance(refitted, Exception):
            out.append((None, [(term, str(refitted)) for term in human.table["term"]]))
            continue
        reasons = [
            (
                term,
                "not estimable in the replicate (aliased, or its reference level absent)",
            )
            for term in refitted.aliased
            if term not in human.aliased
        ]
        out.append((refitted, reasons))
    return out


def _estimates(refitted: Fit | None) -> pd.Series:
    """A replicate's estimates by term (empty when its fit failed)."""
    if refitted is None:
        return pd.Series(dtype=float)
    table = refitted.table
    return pd.Series(table["estimate"].to_numpy(), index=table["term"].to_numpy())


def _replicate_rows(formula: str, refits: list) -> list[tuple]:
    """Rows of ``replicate_coefficients`` for one formula's overall refits."""
    rows = []
    for rep, (refitted, _) in enumerate(refits):
        if refitted is None:
            continue
        columns = ("term", "estimate", "std_error", "p_value")
        values = zip(*(refitted.table[c].to_numpy() for c in columns))
        rows.extend((rep, formula, *row, refitted.nobs) for row in values)
    return rows


def _margins(human: Fit, *, margin: float) -> dict[str, float]:
    """Each term's equivalence margin on its own scale: ``margin`` times ``_unit``."""
    return {term: margin * unit for term, unit in _units(human).items()}


def _units(human: Fit) -> dict[str, float]:
    """Each estimated term's standardised unit on the coefficient's scale: twice the
    outcome's SD (latent SD for logit/probit, 1 for poisson) per input unit
    (``Fit.input_scale``: 1 for a dummy, 2 SD for a continuous input; Gelman 2008).
    A standardised difference of ``margin`` is then a change of margin outcome SDs per
    SD of a continuous input (the correlation scale, r = .1 at 0.1) and of 2 margin
    outcome SDs between a dummy's two values (Cohen's d = .2 at 0.1), whatever the
    dummy's prevalence: the same substantive size for common and rare dummies and for
    interactions."""
    scale = human.outcome_sd if human.family == "ols" else LATENT_SD[human.family]
    table = human.table
    defined = table["term"].to_numpy()[table["estimate"].notna().to_numpy()]
    inputs = human.input_scale.reindex(defined)
    return {term: 2 * scale / u for term, u in inputs.items() if u > 0}


def _limits(terms: pd.DataFrame, human: Fit, *, alpha: float) -> np.ndarray:
    """Each term's equivalence limit on the coefficient's own scale (comparable with
    its ``margin``): the smallest margin at which its TOST at ``alpha`` shows
    equivalence with these data (``metrics.equivalence_limit``, t with the term's
    Satterthwaite df)."""
    return equivalence_limit(
        diff=terms["diff"], std_error=terms["diff_std_error"], alpha=alpha,
        df=terms["term"].map(human.satterthwaite_df).to_numpy(dtype=float),
    )  # fmt: skip


def _reach(
    judged: pd.DataFrame, human: Fit, *, margin: float, alpha: float
) -> dict[str, float | bool | str]:
    """What the equivalence test can show for one group's judged terms, in the margin's
    standardised units: the formula's ``equivalence_bound`` (the largest term limit
    over its unit: every coefficient lies within it), whether ``consistent`` is
    attainable at all with these data (identical coefficients, diff = 0, would be
    shown within ``margin``), the ``limiting_term`` that decides it, and if not
    attainable the ``humans_needed`` (the errors shrinking as 1 / sqrt(n): replicates
    have as many personas; under clustering it is clusters that count)."""
    if not len(judged):
        return {
            "equivalence_bound": math.nan,
            "consistent_attainable": False,
            "humans_needed": math.nan,
            "limiting_term": "",
        }
    units = judged["term"].map(_units(human)).to_numpy(dtype=float)
    floor = equivalence_limit(
        diff=np.zeros(len(judged)), std_error=judged["diff_std_error"], alpha=alpha,
        df=judged["term"].map(human.satterthwaite_df).to_numpy(dtype=float),
    ) / units  # fmt: skip
    worst = float(np.max(floor))
    attainable = bool(worst < margin)
    bounds = judged["equivalence_limit"].to_numpy(dtype=float) / units
    return {
        "equivalence_bound": float(np.max(bounds)),
        "consistent_attainable": attainable,
        "limiting_term": str(judged["term"].iloc[int(np.nanargmax(floor))])
        if np.isfinite(floor).any()
        else "",
        "humans_needed": math.nan
        if attainable or not np.isfinite(worst)
        else float(math.ceil(human.nobs * (worst / margin) ** 2)),
    }


def _small(plan: _Plan, model: Model, human: Fit, rows: pd.DataFrame) -> bool:
    """A cell too small to judge: under ``min_subgroup_n`` respondents, or too few
    events per coefficient (``_few_events``)."""
    return len(rows) < plan.min_subgroup_n or _few_events(model, human, rows)


def _few_events(model: Model, human: Fit, rows: pd.DataFrame) -> bool:
    """For a binary outcome, under ``MIN_EVENTS_PER_PARAMETER`` cases of the rarer
    outcome per estimated coefficient (events per variable, Peduzzi et al. 1996)."""
    if model.family not in ("logit", "probit"):
        return False
    outcome = rows[model.outcome].dropna()
    rarer = min(int((outcome == 1).sum()), int((outcome == 0).sum()))
    return rarer < MIN_EVENTS_PER_PARAMETER * (len(human.table) - len(human.aliased))


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input's order.

    What ``statsmodels.stats.multitest.multipletests(p, method="holm")[1]`` returns
    (tested equal), without the ``gc.collect()`` that function runs on every call:
    0.3 s each beside a loaded model, twelve times in the demo.
    """
    order = np.argsort(p_values, kind="stable")
    steps = np.arange(len(p_values), 0, -1)
    adjusted = np.minimum(np.maximum.accumulate(p_values[order] * steps), 1.0)
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return out


def _adjusted(
    recovery: pd.DataFrame,
    *,
    alpha: float,
    min_n: int,
    margins: Mapping[str, float],
) -> pd.DataFrame:
    """Subgroup cells judged with multiplicity in mind: the Wald and equivalence p-values
    Holm-adjusted over each formula's cells that are not small (``wald_p_adjusted``,
    ``equivalence_p_adjusted``), and each cell's decision taken from the adjusted
    values; a small cell is undetermined. The overall rows keep their own p-values."""
    subgroup = recovery["subgroup"] != OVERALL
    if not subgroup.any():  # nothing to adjust: the p-values as they are
        return recovery.assign(
            wald_p_adjusted=recovery["wald_p_value"],
            equivalence_p_adjusted=recovery["equivalence_p_value"],
        )
    cells = subgroup & ~recovery["small"].astype(bool)
    out = recovery.copy()
    for raw, adjusted in (
        ("wald_p_value", "wald_p_adjusted"),
        ("equivalence_p_value", "equivalence_p_adjusted"),
    ):
        out[adjusted] = out[raw].where(~subgroup)
        usable = cells & out[raw].notna()
        if not usable.any():  # no cell to adjust (pandas' empty groupby is not free)
            continue
        for index in out[usable].groupby("formula").groups.values():
            out.loc[index, adjusted] = holm(out.loc[index, raw].to_numpy(float))
    for index in out.index[cells & (out["failure"] == "")]:
        row = out.loc[index]
        out.loc[index, ["decision", "reason"]] = decide(
            n_terms=int(row["n_terms"]), failed_share=float(row["failed_share"]),
            wald_p_value=float(row["wald_p_adjusted"]),
            equivalence_p_value=_nan(row["equivalence_p_adjusted"]), alpha=alpha,
            margin=margins[row["formula"]], wald_method=str(row["wald_method"]),
            equivalence_bound=_nan(row["equivalence_bound"]),
            limiting_term=str(row["limiting_term"]),
            consistent_attainable=bool(row["consistent_attainable"]),
            humans_needed=_nan(row["humans_needed"]),
        )  # fmt: skip
    small = subgroup & recovery["small"].astype(bool) & (recovery["failure"] == "")
    if small.any():
        out.loc[small, "decision"] = UNDETERMINED
        out.loc[small, "reason"] = (
            f"too small to judge (fewer than {min_n} respondents, "
            f"or under {MIN_EVENTS_PER_PARAMETER} events per coefficient)"
        )
    return out


def _nan(value: object) -> float:
    """A table value as a float, NaN for missing."""
    return math.nan if pd.isna(value) else float(value)


def _commonest(reasons: Counter, term: str) -> str:
    """The most frequent failure reason recorded for ``term``, or an empty string."""
    counts = Counter({reason: n for (t, reason), n in reasons.items() if t == term})
    return counts.most_common(1)[0][0] if counts else ""


# --- distributions, variance, heterogeneity, coherence ------------------------------


def _distributions(plan: _Plan, human: Split, replicates: list[Split]) -> pd.DataFrame:
    """JSD and ordinal distance between the human and each replicate's answers, per
    item and group (means over the replicates that answered)."""
    rows = []
    for group, people in human.items():
        sims = [replicate[group] for replicate in replicates]
        weights = plan.weights(people)
        for item in plan.study.items:
            name = item.name
            scale = plan.scales.get(name)
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
                    "n_sim": _mean(given),
                    "small": group != (OVERALL, OVERALL)
                    and len(people) < plan.min_subgroup_n,
                    "jsd": _mean(
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
                    "wasserstein": _mean(
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


def _variance(plan: _Plan, human: Split, replicates: list[Split]) -> pd.DataFrame:
    """Variance of each item, human vs simulated, per group; ratio is the geometric mean
    of the per-replicate ratios (a ratio of 1/2 is as far off as one of 2)."""
    rows = []
    for group, people in human.items():
        sims = [replicate[group] for replicate in replicates]
        weights = plan.weights(people)
        for name in plan.study.item_names:
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
                    "sim_var": _mean([sim[name].var() for sim in sims]),
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


def _heterogeneity(plan: _Plan, human: Split, replicates: list[Split]) -> pd.DataFrame:
    """Distinct response patterns and their bias-corrected entropy over the pattern items,
    per group. Each replicate answers as many personas as there are humans, so the
    counts compare at equal n; nonresponse leaves fewer complete patterns."""
    items = list(plan.pattern_items)
    rows = []
    for group, people in human.items():
        own = heterogeneity(people, items, weights=plan.weights(people))
        sims = [heterogeneity(replicate[group], items) for replicate in replicates]
        rows.append(
            {
                "subgroup": group[0],
                "level": group[1],
                "n_human": own.n,
                "n_sim": _mean([h.n for h in sims]),
                "small": group != (OVERALL, OVERALL)
                and len(people) < plan.min_subgroup_n,
                "unique_patterns_human": own.unique_patterns,
                "unique_patterns_sim": _mean([h.unique_patterns for h in sims]),
                "entropy_human": own.entropy_corrected,
                "entropy_sim": _mean([h.entropy_corrected for h in sims]),
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


def _coherence(plan: _Plan, human: Split, replicates: list[Split]) -> pd.DataFrame:
    """Belief–action incoherence rates, human vs simulated, per pair (and per rule) and group.

    A pair's row counts a respondent incoherent when any of its rules holds (the
    rules joined with ``or``); a pair declared with several rules (say, high concern
    yet discloses, low concern yet refuses) also gets one ``rule`` row per rule. A
    rule judges one respondent at a time, so it is evaluated once for all samples
    (``incoherence_flags_each``) and its flags read per group.
    """
    samples = [split[OVERALL, OVERALL] for split in (human, *replicates)]
    masks = [_masks(plan, sample) for sample in samples]
    human_weights = plan.weights(samples[0])
    if human_weights is None:
        human_weights = np.ones(len(samples[0]))
    rows = []
    for pair, rules in _pairs(plan.study.coherence):
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
                        "n_sim": _mean([m.sum() for m in inside[1:]]),
                        "incoherence_human": weighted_mean(
                            picked[0], human_weights[inside[0]]
                        ),
                        "incoherence_sim": _mean([_mean(f) for f in picked[1:]]),
                    }
                )
    return pd.DataFrame(rows, columns=COHERENCE_COLUMNS)


def _pairs(coherence: Sequence[Coherence]) -> list[tuple[Coherence, list[str]]]:
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


def _shares(
    plan: _Plan, human_df: pd.DataFrame, samples: list[pd.DataFrame]
) -> pd.DataFrame:
    """Share of each option among the answers, human and simulated (mean over
    replicates). A whole-number item (a formula's 1-5 outcome) is shown the same way
    over the values the humans and the replicates gave, when there are at most
    ``MAX_OBSERVED_OPTIONS`` of them; other number items have no such table (their
    distributions are in ``_distributions``)."""
    rows = []
    for item in plan.study.items:
        levels = _share_levels(item, human_df, samples)
        if levels is None:
            continue
        human = _level_shares(
            human_df[item.name], levels, weights=plan.weights(human_df)
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
    item: Item, human_df: pd.DataFrame, samples: list[pd.DataFrame]
) -> dict[str, float] | None:
    """The (label, code) levels ``_shares`` counts for ``item``: its options, or the
    values a whole-number item took (None when not whole or too many)."""
    if not item.is_number:
        return dict(item.options)
    if not item.number.whole:
        return None
    given = pd.concat([human_df[item.name], *(s[item.name] for s in samples)])
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


# --- verdicts, headline, uncertainty, notes -------------------------------------------


VERDICT_COLUMNS = [
    "formula", "decision", "wald_statistic", "wald_df", "wald_denominator_df",
    "wald_method", "wald_p_value", "equivalence_p_value", "margin", "equivalence_bound",
    "limiting_term",
    "consistent_attainable", "humans_needed", "n_terms", "nobs_human", "nobs_sim",
    "failed_share", "reason",
]  # fmt: skip


def _verdicts(plan: _Plan, recovery: pd.DataFrame) -> pd.DataFrame:
    """One row per formula over all respondents: the decision, its tests and its reason."""
    overall = recovery[recovery["subgroup"] == OVERALL]
    margins = {m.formula: m.margin for m in plan.study.models}
    return overall.assign(margin=overall["formula"].map(margins))[
        VERDICT_COLUMNS
    ].reset_index(drop=True)


def _headline(
    found: dict[str, pd.DataFrame],
    references: dict[str, float],
    draws: pd.DataFrame,
    coding: Coding,
    *,
    alpha: float,
) -> pd.DataFrame:
    """A row per headline metric (value, bootstrap CI, Monte Carlo SE, reference: the
    fresh-sample run's value, ``references``), then the humans' own levels."""
    values = _point(found)
    mcse = _mcse(found, coding)
    drawn, per_rep = _by_metric(draws), _by_metric(found["replicate_metrics"])
    rows = []
    for name in [m.name for m in HEADLINE] + list(HUMAN_LEVELS):
        spec = METRICS.get(name)
        low, high = _bootstrap_interval(
            drawn.get(name, _NONE), value=values[name], alpha=alpha
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


def _point(tables: dict[str, pd.DataFrame]) -> dict[str, float]:
    """The headline values from a run's tables (definitions: docs/metrics.md)."""
    overall = {
        name: _overall(tables[name])
        for name in (
            "distributions",
            "variance",
            "heterogeneity",
            "coherence",
            "recovery",
        )
    }
    cells = tables["distributions"]
    cells = cells[(cells["subgroup"] != OVERALL) & ~cells["small"].astype(bool)]
    per_cell = (
        cells.groupby(["subgroup", "level"])["jsd"].mean().dropna()
        if len(cells)
        else cells["jsd"]  # none (pandas' empty groupby is not free)
    )
    pairs = overall["coherence"][overall["coherence"]["scope"] == "pair"]
    hetero = overall["heterogeneity"]
    return {
        "jsd": _mean(overall["distributions"]["jsd"]),
        "wasserstein": _mean(overall["distributions"]["wasserstein"]),
        "subgroup_jsd_gap": float(per_cell.max() - per_cell.min())
        if len(per_cell)
        else math.nan,
        "variance_ratio": geometric_mean(overall["variance"]["ratio"]),
        "unique_patterns": _first(hetero["unique_patterns_sim"]),
        "entropy": _first(hetero["entropy_sim"]),
        "incoherence": _mean(pairs["incoherence_sim"]),
        "nonresponse": float(tables["nonresponse"]),
        "sign_f1": _mean(overall["recovery"]["sign_f1"]),
        "false_positive_rate": _mean(overall["recovery"]["false_positive_rate"]),
        "coverage": _mean(overall["recovery"]["coverage"]),
        "unique_patterns_human": _first(hetero["unique_patterns_human"]),
        "entropy_human": _first(hetero["entropy_human"]),
        "incoherence_human": _mean(pairs["incoherence_human"]),
    }


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


def _mcse(found: dict[str, pd.DataFrame], coding: Coding) -> dict[str, float]:
    """Monte Carlo standard error over replicates of each simulated metric."""
    out = {}
    per_rep = found["replicate_metrics"]
    for name, values in per_rep.groupby("metric")["value"]:
        values = values.dropna()
        out[name] = (
            float(values.std(ddof=1) / math.sqrt(len(values)))
            if len(values) > 1
            else math.nan
        )
    if len(coding.replicates) > 1:
        single = replicate_values(coding)
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


def _bootstrap(
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


def _unparseable(simulator: Simulator) -> Counter[str]:
    """The simulator's running count of unreadable answers per item (generate mode),
    copied; none for simulators that always answer with an option."""
    return Counter(getattr(simulator, "unparseable", None) or {})


def _notes(
    plan: _Plan,
    reference: dict[str, Any],
    samples: list[pd.DataFrame],
    human_fits: dict[Key, Fit | str],
    human_df: pd.DataFrame,
    *,
    unparseable: Counter[str],
    missing_answers: str | None = None,
) -> dict[str, Any]:
    """What the reader must know beside the numbers: the simulator's nonresponse per
    item and its ``unparseable`` answers per item in this validation's replicates, the
    notes about the reference (``_reference_notes``), the humans with missing persona
    values (``Study.missing_persona_note``, None without), the humans' declared missing
    answers (``Study.missing_answers_note``, None without), the survey weights
    (``_weights_note``, None without) and warnings."""
    cautions = []
    for (formula, subgroup, _), human in human_fits.items():
        clusters = getattr(human, "clusters", None) if subgroup == OVERALL else None
        if clusters is not None and clusters < FEW_CLUSTERS:
            cautions.append(
                f"{formula}: cluster-robust errors on {clusters} clusters "
                f"(fewer than {FEW_CLUSTERS}) are unreliable"
            )
    cautions.extend(_reference_cautions(plan, reference, human_fits, human_df))
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
            item: _mean([sample[item].isna().mean() for sample in samples])
            for item in plan.study.item_names
        },
        "unparseable": {item: int(unparseable[item]) for item in plan.study.item_names},
        **reference,
        "missing_personas": plan.study.missing_persona_note(human_df),
        "missing_answers": missing_answers,
        "weights": _weights_note(plan, human_df),
        "warnings": cautions,
    }


def _reference_cautions(
    plan: _Plan,
    reference: dict[str, Any],
    human_fits: dict[Key, Fit | str],
    human_df: pd.DataFrame,
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
    for model in plan.study.models:
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
        if isinstance(human, Fit) and _few_events(model, human, human_df):
            cautions.append(
                f"{model.formula}: under {MIN_EVENTS_PER_PARAMETER} events per "
                "coefficient; the fresh reference is not proven calibrated there, so "
                "read its values as approximate"
            )
    return cautions


def _weights_note(plan: _Plan, human_df: pd.DataFrame) -> str | None:
    """One sentence on the survey weights (None without): the column, Kish's effective
    sample size, and what they weight."""
    weights = plan.weights(human_df)
    if weights is None:
        return None
    effective = weights.sum() ** 2 / (weights**2).sum()
    return (
        f"Survey weights from column {plan.weight!r} (Kish effective sample size "
        f"{effective:.0f} of {len(weights)}): the humans' fits, shares, variances, "
        "pattern entropy and incoherence rates are weighted; replicate personas are "
        "drawn in proportion to the weights and their answers count once."
    )


@cache
def _versions() -> dict[str, str]:
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


# --- small helpers ------------------------------------------------------------------


def _mean(values: Sequence[float] | pd.Series) -> float:
    """Mean of the non-missing values, NaN when there are none (no warning)."""
    array = np.asarray(values, dtype=float)
    array = array[~np.isnan(array)]
    return float(array.mean()) if len(array) else math.nan


def _overall(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``table`` that cover all respondents."""
    if table.empty:
        return table
    overall = (table["subgroup"].to_numpy() == OVERALL) & (
        table["level"].to_numpy() == OVERALL
    )
    return table if overall.all() else table[overall]


def _overall_only(split: Split) -> Split:
    """The all-respondents group of a split."""
    return {(OVERALL, OVERALL): split[OVERALL, OVERALL]}


def _first(column: pd.Series) -> float:
    """The single overall value of a column, NaN if the table is empty."""
    return float(column.iloc[0]) if len(column) else math.nan
