"""Coefficient comparison: the study's models on humans and on each replicate, side by side.

Fits every formula on the humans and on each replicate sample, overall and per
subgroup cell, and compares the coefficients: differences with their intervals,
equivalence (TOST against margins on Gelman's two-SD scale) and equality (a Wald test
referred to Hotelling's T²), Holm's adjustment over subgroup cells, and the three-way
decision per formula (``results.decide``). The estimators live in ``regression``, the
formulas of each score in ``metrics``.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from simval.binding import Binding, Key, Split, bind
from simval.errors import DataError, EstimationError, FormulaError, plain
from simval.families import family_of
from simval.formulas import has_intercept, rhs_factors
from simval.metrics import (
    TERM_COLUMNS,
    Recovery,
    WaldTest,
    coefficient_recovery,
    equivalence_limit,
    nan_mean,
    nonresponse_scale,
    simulated_interval,
    wald_equality,
)
from simval.regression import Fit, fit
from simval.results import OVERALL, UNDETERMINED, decide, is_finding
from simval.study import Model, Study, formula_variables

MIN_EVENTS_PER_PARAMETER = 10
"""A binary-outcome model's cell is also ``small`` when its rarer outcome has fewer than
this many cases per coefficient (Peduzzi et al. 1996, events per variable)."""

# --- coefficients -------------------------------------------------------------------


def _for_fit(binding: Binding, rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with each factor item as a categorical of its declared options, so the
    humans and every replicate share levels and reference level, and each categorical
    outcome as its labels (``labelled_outcomes``)."""
    if not (binding.categorical_items or binding.labelled_outcomes):
        return rows
    factors = {
        item.name: pd.Categorical(rows[item.name], categories=list(item.codes))
        for item in binding.categorical_items
    }
    outcomes = {
        item.name: pd.Categorical(
            rows[item.name].map(dict(zip(item.codes, item.labels))),
            categories=list(item.labels),
            ordered=True,
        )
        for item in binding.labelled_outcomes
    }
    return rows.assign(**factors, **outcomes)


def fit_humans(binding: Binding, *, alpha: float) -> dict[Key, Fit | str]:
    """The human fit of every model in every cell, or the reason it cannot be estimated.

    The overall human fit must succeed: if the study's own model cannot be estimated
    on the human data, that is an error in the input, raised here.
    """
    check_model_data(binding)
    fits: dict[Key, Fit | str] = {}
    for model in binding.study.models:
        for (subgroup, level), rows in binding.cells.items():
            try:
                fits[model.formula, subgroup, level] = fit(
                    model.formula,
                    _for_fit(binding, rows),
                    family=model.family,
                    cov=model.cov,
                    weights=binding.weight,
                    alpha=alpha,
                )
            except (EstimationError, DataError) as exc:
                if subgroup == OVERALL:
                    raise
                fits[model.formula, subgroup, level] = str(exc)
    return fits


def check_human_models(study: Study, human_df: pd.DataFrame) -> None:
    """Raise what ``validate`` would raise on these humans before it asks a simulator
    anything: bad data (``Study.check_data``, ``check_model_data``), or a model of the
    study that cannot be estimated on them (overall: a separated logit, a constant
    outcome), so a long run fails at once instead of after hours of work. Commands
    call it on the respondents they compare before they load a model."""
    fit_humans(bind(study, human_df, subgroups=()), alpha=0.05)


def check_model_data(binding: Binding) -> None:
    """Refuse, naming the column or term, what would leave a model of the study
    unestimable on the humans, or silently smaller: a column a formula reads that is
    missing on every row, text in a column a formula uses as a number, and a factor
    with one level (or, beside an intercept, a number with one value) in the rows a
    fit uses, which the fit would drop as aliased instead of estimating."""
    rows, items = binding.human, set(binding.study.item_names)
    for model in binding.study.models:
        used = sorted(formula_variables(model.formula) & set(rows.columns))
        for column in used:
            if rows[column].isna().all():
                raise DataError(  # (an item with no answer: Study.check_data)
                    f"column {column!r} is missing on every row of the human data; "
                    f"formula {model.formula!r} needs it"
                )
        factors = rhs_factors(model.formula)
        for expr, columns in factors.items():
            if not _is_wrapped(expr):
                for column in sorted(columns - items):
                    _check_numeric(rows[column], column=column, formula=model.formula)
        complete = rows[used].dropna()
        for expr, columns in factors.items():
            values = complete[next(iter(columns))].unique() if len(columns) == 1 else ()
            if len(values) != 1:
                continue
            if _is_factor(expr, columns, rows):
                raise FormulaError(
                    f"{expr} has one level ({plain(values[0])}) in the human data: a "
                    "formula term needs two; drop it or use more respondents"
                )
            if has_intercept(model.formula):
                raise FormulaError(
                    f"{expr} has one value ({plain(values[0])}) in the human data: a "
                    "formula term needs it to vary; drop it or use more respondents"
                )


def _is_factor(expr: str, columns: set[str], rows: pd.DataFrame) -> bool:
    """Whether a formula factor is categorical: ``C(...)``, or a column of text,
    categories or booleans (which the formula expands into levels)."""
    if _is_wrapped(expr):
        return True
    if expr not in columns or expr not in rows.columns:
        return False
    values = rows[expr]
    return pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(
        values
    )


def _is_wrapped(expr: str) -> bool:
    """Whether a formula factor is written as a factor: ``C(...)``."""
    return expr.replace(" ", "").startswith("C(")


def _check_numeric(values: pd.Series, *, column: str, formula: str) -> None:
    """Refuse text in a column of numbers a formula uses as a number: a few words
    ("forty" among ages), or numbers stored as text; either would make the whole
    column a factor, one level per value."""
    if pd.api.types.is_numeric_dtype(values):
        return
    present = values.dropna()
    text = pd.to_numeric(present, errors="coerce").isna()
    if not len(present) or text.mean() >= 0.5:  # a column of words: a factor
        return
    if not text.any():
        raise DataError(
            f"column {column!r} holds numbers as text ({plain(present.iloc[0])}, ...); "
            f"formula {formula!r} uses it as a number: convert it with pd.to_numeric"
        )
    row = text.index[text.to_numpy()][0]
    raise DataError(
        f"column {column!r} has non-numeric value {plain(present[row])} (row "
        f"{plain(row)}); formula {formula!r} uses it as a number: correct it or "
        "leave it blank"
    )


def coefficient_tables(
    binding: Binding,
    human_fits: dict[Key, Fit | str],
    replicates: list[Split],
    *,
    alpha: float,
    reference_failed: Mapping[str, float],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-term comparisons, per-group recovery and tests, per-replicate scores and fits
    (``reference_failed``: see ``validate._evaluate``; it concerns the overall groups).
    ``human_fits`` names the cells compared (``binding.cells`` holds their humans)."""
    models = {m.formula: m for m in binding.study.models}
    term_frames, rows, scores, by_rep = [], [], [], []
    for (formula, subgroup, level), human in human_fits.items():
        row = {"formula": formula, "subgroup": subgroup, "level": level}
        people = binding.cells[subgroup, level]
        if isinstance(human, str):
            rows.append(
                {
                    **row,
                    "n_human": len(people),
                    "n_terms": 0,
                    "small": True,
                    "decision": UNDETERMINED,
                    "reason": f"the human model cannot be estimated here ({human})",
                    "failure": human,
                }
            )
            continue
        samples = [r[subgroup, level] for r in replicates]
        refits = _refits(binding, human, samples)
        overall = subgroup == OVERALL
        terms, found, recovery = _compare_cell(
            models[formula], human, refits, samples, alpha=alpha,
            items=binding.study.item_names,
            reference_failed=reference_failed.get(formula, 0.0) if overall else 0.0,
        )  # fmt: skip
        term_frames.append(
            terms.assign(formula=formula, subgroup=subgroup, level=level)
        )
        rows.append(
            {
                **row,
                "n_human": len(people),
                "small": not overall
                and _small(binding, models[formula], human, people),
                **found,
            }
        )
        if overall:
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
            min_n=binding.min_subgroup_n,
            margins={m.formula: m.margin for m in binding.study.models},
        ),
        per_rep,
        by_rep_frame,
    )


def _compare_cell(
    model: Model,
    human: Fit,
    refits: list[tuple[Fit | None, list[tuple[str, str]]]],
    samples: list[pd.DataFrame],
    *,
    alpha: float,
    items: Sequence[str],
    reference_failed: float,
) -> tuple[pd.DataFrame, dict[str, Any], Recovery]:
    """One cell's human fit against its replicates' refits: the per-term table (with
    each term's commonest failure), the cell's tests and three-way decision (a row of
    the recovery table, less its cell and size) and the recovery scores."""
    margin = model.margin
    recovery, wald = _compare(
        human, refits, margin=margin, alpha=alpha,
        answerable=[_answerable(model, rows, items=items) for rows in samples],
    )  # fmt: skip
    sim_nobs = [r.nobs if isinstance(r, Fit) else 0 for r, _ in refits]
    terms = recovery.terms.assign(
        equivalence_limit=_limits(recovery.terms, human, alpha=alpha),
        **simulated_interval(recovery.terms, alpha=alpha),
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
        reference_failed_share=reference_failed, **reach,
    )  # fmt: skip
    failures = Counter(pair for _, reasons in refits for pair in reasons)
    terms = terms.assign(failure=[_commonest(failures, t) for t in terms["term"]])
    found = {
        "nobs_human": human.nobs,
        # rows the fitted replicates used (failed ones are in failed_share)
        "nobs_sim": nan_mean([n for n in sim_nobs if n > 0]),
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
    return terms, found, recovery


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
    "formula", "subgroup", "level", *TERM_COLUMNS, "equivalence_limit", "sim_ci_low",
    "sim_ci_high", "failure",
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
    binding: Binding, human: Fit, samples: list[pd.DataFrame]
) -> list[tuple[Fit | None, list[tuple[str, str]]]]:
    """Each replicate's fit (None when it failed) and the (term, reason) of each failed
    term, all refitted in one go (``Fit.refit_many`` shares the design work). A
    replicate is unweighted: its personas were drawn in proportion to the weights."""
    unweighted = dataclasses.replace(human, weights=None)
    out = []
    for refitted in unweighted.refit_many(
        [_for_fit(binding, rows) for rows in samples]
    ):
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
    scale = family_of(human.family).outcome_scale(outcome_sd=human.outcome_sd)
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


def _small(binding: Binding, model: Model, human: Fit, rows: pd.DataFrame) -> bool:
    """A cell too small to judge: under ``min_subgroup_n`` respondents, or too few
    events per coefficient (``few_events``)."""
    return len(rows) < binding.min_subgroup_n or few_events(model, human, rows)


def few_events(model: Model, human: Fit, rows: pd.DataFrame) -> bool:
    """For a binary outcome, under ``MIN_EVENTS_PER_PARAMETER`` cases of the rarer
    outcome per estimated coefficient (events per variable, Peduzzi et al. 1996)."""
    events = family_of(model.family).events(rows[model.outcome].dropna())
    if events is None:
        return False
    return events < MIN_EVENTS_PER_PARAMETER * (len(human.table) - len(human.aliased))


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


# --- verdicts, headline, uncertainty, notes -------------------------------------------


VERDICT_COLUMNS = [
    "formula", "decision", "wald_statistic", "wald_df", "wald_denominator_df",
    "wald_method", "wald_p_value", "equivalence_p_value", "margin", "equivalence_bound",
    "limiting_term",
    "consistent_attainable", "humans_needed", "n_terms", "nobs_human", "nobs_sim",
    "failed_share", "reason",
]  # fmt: skip


def verdict_table(binding: Binding, recovery: pd.DataFrame) -> pd.DataFrame:
    """One row per formula over all respondents: the decision, its tests and its reason."""
    overall = recovery[recovery["subgroup"] == OVERALL]
    margins = {m.formula: m.margin for m in binding.study.models}
    return overall.assign(margin=overall["formula"].map(margins))[
        VERDICT_COLUMNS
    ].reset_index(drop=True)


def _nan(value: object) -> float:
    """A table value as a float, NaN for missing."""
    return math.nan if pd.isna(value) else float(value)


def _commonest(reasons: Counter, term: str) -> str:
    """The most frequent failure reason recorded for ``term``, or an empty string."""
    counts = Counter({reason: n for (t, reason), n in reasons.items() if t == term})
    return counts.most_common(1)[0][0] if counts else ""
