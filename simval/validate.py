"""validate(): would the study reach the same conclusions on simulated respondents?

Orchestration only: it draws replicate samples of personas, asks the simulator to
answer them, fits the study's models and computes every metric on the human data
and on each synthetic replicate, overall and per subgroup, and gathers the results
in a ``Validation``. The statistics themselves live in ``regression`` and
``metrics``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simval.errors import (
    DataError,
    EstimationError,
    FormulaError,
    OptionError,
    SimulatorError,
    check_option,
)
from simval.metrics import (
    Recovery,
    coefficient_recovery,
    heterogeneity,
    incoherence_rate,
    jsd,
    variance_ratio,
)
from simval.regression import FAMILIES, Fit, check_cov, fit
from simval.simulators.base import Simulator, check_output
from simval.study import (
    Coherence,
    Item,
    Model,
    Study,
    check_codes,
    formula_variables,
    outcome_of,
)

OVERALL = "overall"
"""The ``subgroup`` and ``level`` of rows that cover every respondent."""

NOT_FINDINGS = ("Intercept",)
"""Terms kept in the coefficient table but left out of sign-F1, FPR and coverage."""

SUMMARY_KEYS = (
    "n_human",
    "reps",
    "jsd",
    "subgroup_jsd_gap",
    "variance_ratio",
    "unique_patterns_human",
    "unique_patterns_sim",
    "entropy_human",
    "entropy_sim",
    "incoherence_human",
    "incoherence_sim",
    "sign_f1",
    "false_positive_rate",
    "coverage",
)


@dataclass(frozen=True)
class Validation:
    """Human vs simulated respondents on every axis, overall and per subgroup.

    Every table has ``subgroup`` and ``level`` columns; rows about all respondents
    have both set to ``"overall"``. Simulated figures are means over the replicate
    samples. Columns:

    - ``coefficients``: formula, subgroup, level, term, human_estimate,
      human_std_error, human_ci_low, human_ci_high, human_p_value, human_class,
      sim_estimate, sim_std_error, sim_ci_low, sim_ci_high, sim_class, bias,
      std_diff, se_ratio, sign_agree, sig_agree, ci_overlap, coverage, n_reps,
      n_failed, failure (the commonest reason a replicate could not estimate it).
    - ``recovery``: formula, subgroup, level, n_terms, sign_f1,
      false_positive_rate, coverage, failure (why the human model itself could not
      be estimated in that subgroup, else empty).
    - ``distributions``: item, subgroup, level, n_human, n_sim, jsd.
    - ``variance``: item, subgroup, level, human_var, sim_var, ratio.
    - ``heterogeneity``: subgroup, level, n_human, n_sim, unique_patterns_human,
      unique_patterns_sim, entropy_human, entropy_sim (over ``pattern_items``).
    - ``coherence``: belief, action, rule, scope, subgroup, level, n_human, n_sim,
      incoherence_human, incoherence_sim. Each belief–action pair has a ``scope ==
      "pair"`` row (incoherent under any of its rules); a pair with several rules also
      has a ``"rule"`` row per rule.
    """

    coefficients: pd.DataFrame
    recovery: pd.DataFrame
    distributions: pd.DataFrame
    variance: pd.DataFrame
    heterogeneity: pd.DataFrame
    coherence: pd.DataFrame
    simulator: str
    n_human: int
    reps: int
    alpha: float
    seed: int | None
    pattern_items: tuple[str, ...]

    def summary(self) -> dict[str, float]:
        """Headline numbers, each over all respondents (see docs/metrics.md for definitions).

        jsd and variance_ratio are means over items; subgroup_jsd_gap is the spread
        (worst minus best) of the per-level mean JSD; sign_f1, false_positive_rate and
        coverage are means over formulas; incoherence is the mean over belief–action pairs of the
        share of respondents breaking any of the pair's rules.
        """
        overall = _overall
        hetero = overall(self.heterogeneity)
        levels = self.distributions[self.distributions["subgroup"] != OVERALL]
        per_level = levels.groupby(["subgroup", "level"])["jsd"].mean()
        coherence = overall(self.coherence)
        coherence = coherence[coherence["scope"] == "pair"]
        recovery = overall(self.recovery)
        values = {
            "n_human": self.n_human,
            "reps": self.reps,
            "jsd": _mean(overall(self.distributions)["jsd"]),
            "subgroup_jsd_gap": float(per_level.max() - per_level.min())
            if len(per_level)
            else math.nan,
            "variance_ratio": _mean(overall(self.variance)["ratio"]),
            "unique_patterns_human": _first(hetero["unique_patterns_human"]),
            "unique_patterns_sim": _first(hetero["unique_patterns_sim"]),
            "entropy_human": _first(hetero["entropy_human"]),
            "entropy_sim": _first(hetero["entropy_sim"]),
            "incoherence_human": _mean(coherence["incoherence_human"]),
            "incoherence_sim": _mean(coherence["incoherence_sim"]),
            "sign_f1": _mean(recovery["sign_f1"]),
            "false_positive_rate": _mean(recovery["false_positive_rate"]),
            "coverage": _mean(recovery["coverage"]),
        }
        return {key: values[key] for key in SUMMARY_KEYS}

    def to_json(self) -> str:
        """Serialise every table and setting to JSON; ``Validation.from_json`` reads it back."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, pd.DataFrame):
                value = _frame_to_json(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return json.dumps(out, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Validation:
        """Rebuild a Validation from the output of ``to_json``."""
        raw = json.loads(text)
        values = {}
        for f in fields(cls):
            value = raw[f.name]
            if isinstance(value, dict) and "dtypes" in value:
                value = _frame_from_json(value)
            elif isinstance(value, list):
                value = tuple(value)
            values[f.name] = value
        return cls(**values)

    def to_html(
        self, path: str | Path, *, study: Study, name: str | None = None, **kw: Any
    ) -> Path:
        """Write a self-contained HTML report of this validation (``simval.report.write_html``)."""
        from simval.report import write_html

        return write_html({name or self.simulator: self}, study=study, out=path, **kw)

    def to_markdown(
        self, path: str | Path, *, study: Study, name: str | None = None, **kw: Any
    ) -> Path:
        """Write the Markdown report, figures beside it (``simval.report.write_markdown``)."""
        from simval.report import write_markdown

        return write_markdown(
            {name or self.simulator: self}, study=study, out=path, **kw
        )


@dataclass(frozen=True)
class _Plan:
    """Everything validate needs, resolved and checked before any work starts."""

    study: Study
    subgroups: tuple[str, ...]
    levels: dict[str, tuple[Any, ...]]
    persona_columns: tuple[str, ...]
    pattern_items: tuple[str, ...]


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
) -> Validation:
    """Compare ``reps`` synthetic replicate samples from ``simulator`` with the human data.

    Each replicate draws n personas from the humans with replacement (a fresh sample
    of the same population; with ``BootstrapSimulator`` it is exactly a
    nonparametric bootstrap of the human data), simulates their answers, fits every
    model and computes every metric, overall and in each subgroup level.

    With a formula, the simulated columns are its outcome plus ``items``; every other
    column of ``human_df`` is persona data the simulator sees. With a ``Study``, the
    simulated columns are its items and ``family``/``cov``/``items`` come from it.
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
    )
    _check_no_leakage(human_df, simulator)
    if not callable(getattr(simulator, "simulate", None)):
        raise SimulatorError(
            f"{type(simulator).__name__} has no simulate(personas, items, *, seed)"
        )
    human = _split(plan, human_df)
    human_fits = _human_fits(plan, human, alpha=alpha)
    rng = np.random.default_rng(seed)
    personas = human_df[list(plan.persona_columns)]
    replicates = []
    for _ in range(reps):
        drawn = personas.iloc[rng.integers(len(personas), size=len(personas))]
        answers = simulator.simulate(drawn, plan.study.items, seed=rng.integers(2**63))
        answers = check_output(
            answers, personas=drawn, items=plan.study.items, simulator=simulator
        )
        replicates.append(_split(plan, pd.concat([drawn, answers], axis=1)))
    recoveries, failures = _recoveries(human_fits, replicates, alpha=alpha)
    return Validation(
        coefficients=_coefficients_table(recoveries, failures),
        recovery=_recovery_table(recoveries),
        distributions=_distributions(plan, human, replicates),
        variance=_variance(plan, human, replicates),
        heterogeneity=_heterogeneity(plan, human, replicates),
        coherence=_coherence(plan, human, replicates),
        simulator=repr(simulator),
        n_human=len(human_df),
        reps=reps,
        alpha=alpha,
        seed=seed,
        pattern_items=plan.pattern_items,
    )


COMPARE_COLUMNS = {
    "jsd": "jsd",
    "subgroup_jsd_gap": "subgroup_jsd_gap",
    "variance_ratio": "variance_ratio",
    "unique_patterns": "unique_patterns_sim",
    "entropy": "entropy_sim",
    "incoherence": "incoherence_sim",
    "sign_f1": "sign_f1",
    "false_positive_rate": "false_positive_rate",
    "coverage": "coverage",
}
"""compare()'s columns and the summary() key each simulator's value comes from."""

HUMAN_COLUMNS = {
    "unique_patterns": "unique_patterns_human",
    "entropy": "entropy_human",
    "incoherence": "incoherence_human",
}
"""The columns the human row fills: the levels that exist without a comparison."""


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
    """Headline numbers of several simulators side by side, a row each, plus a human row.

    Each simulator is validated on the same human data with the same replicate
    personas (same ``seed``). The ``human`` row holds what the humans themselves
    show (distinct patterns, entropy, incoherence); comparison columns are empty there.
    """
    if not simulators:
        raise OptionError("compare needs at least one simulator")
    validations = {
        name: validate(
            study,
            human_df,
            simulator,
            reps=reps,
            seed=seed,
            alpha=alpha,
            subgroups=subgroups,
        )
        for name, simulator in simulators.items()
    }
    return summary_table(validations)


def summary_table(validations: Mapping[str, Validation]) -> pd.DataFrame:
    """compare()'s table from validations of several simulators against the same human data."""
    if not validations:
        raise OptionError("summary_table needs at least one validation")
    rows = {}
    for name, validation in validations.items():
        summary = validation.summary()
        rows[name] = {column: summary[key] for column, key in COMPARE_COLUMNS.items()}
    rows["human"] = {column: summary[key] for column, key in HUMAN_COLUMNS.items()}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(COMPARE_COLUMNS))
    table.index.name = "simulator"
    return table


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
) -> _Plan:
    """Resolve the study, check every input against the human data, and fix the subgroup levels."""
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise OptionError(f"reps={reps!r} must be a positive integer")
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
        study = _formula_study(
            formula_or_study,
            human_df,
            declared=declared,
            family=family,
            cov=cov,
            items=items,
        )
    subgroups = tuple(study.subgroups if subgroups is None else subgroups)
    persona_columns = study.persona_columns or tuple(
        c for c in human_df.columns if c not in study.item_names
    )
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
    )


def _check_no_leakage(human_df: pd.DataFrame, simulator: object) -> None:
    """Refuse to evaluate a fine-tuned simulator on respondents it was trained on."""
    trained = getattr(simulator, "training_index", ())
    seen = human_df.index[human_df.index.isin(list(trained))]
    if len(seen):
        shown = ", ".join(repr(label) for label in seen[:5])
        raise DataError(
            f"{len(seen)} respondent(s) of the human data were in the fine-tuning pilot of "
            f"{simulator!r} (e.g. {shown}); evaluate on the holdout only"
        )


def _formula_study(
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
    question and options, which an LLM simulator needs), or else one whose options
    are the codes seen in the human data.
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
    chosen = tuple(
        declared.item(name) if name in known else _observed_item(human_df[name])
        for name in names
    )
    check_codes(human_df, chosen, what="the human data")
    persona = tuple(c for c in human_df.columns if c not in names)
    return Study(items=chosen, persona=persona, models=(Model(formula, family, cov),))


def _observed_item(column: pd.Series) -> Item:
    """An item whose options are the distinct values a human column takes."""
    values = pd.to_numeric(column.dropna(), errors="coerce")
    if values.isna().any() or not len(values):
        raise DataError(
            f"item {column.name!r} must hold numeric answer codes (got {column.dtype} values)"
        )
    codes = sorted(set(values.astype(float).tolist()))
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


# --- splitting into (subgroup, level) groups ---------------------------------------

Group = tuple[str, str]
"""(subgroup, level); ``(OVERALL, OVERALL)`` for all respondents."""
Key = tuple[str, str, str]
"""(formula, subgroup, level)."""


def _split(plan: _Plan, df: pd.DataFrame) -> dict[Group, pd.DataFrame]:
    """All respondents, then the rows of every level of every subgroup (levels as strings)."""
    groups = {(OVERALL, OVERALL): df}
    for subgroup in plan.subgroups:
        for level in plan.levels[subgroup]:
            groups[subgroup, str(level)] = df[df[subgroup] == level]
    return groups


# --- coefficients -------------------------------------------------------------------


def _human_fits(
    plan: _Plan, human: dict[Group, pd.DataFrame], *, alpha: float
) -> dict[Key, Fit | str]:
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
                    rows,
                    family=model.family,
                    cov=model.cov,
                    conf_level=1 - alpha,
                )
            except (EstimationError, DataError) as exc:
                if subgroup == OVERALL:
                    raise
                fits[model.formula, subgroup, level] = str(exc)
    return fits


def _recoveries(
    human_fits: dict[Key, Fit | str],
    replicates: list[dict[Group, pd.DataFrame]],
    *,
    alpha: float,
) -> tuple[dict[Key, Recovery | str], dict[Key, Counter]]:
    """Recovery of every human estimate from refitting each model on each replicate.

    Returns the Recovery per group (or the reason the human fit failed there) and,
    per group, a count of (term, reason) for each term a replicate could not estimate.
    """
    sim_tables: dict[Key, list[pd.DataFrame]] = {k: [] for k in human_fits}
    failures: dict[Key, Counter] = {k: Counter() for k in human_fits}
    for synthetic in replicates:
        for (formula, subgroup, level), human in human_fits.items():
            if isinstance(human, str):
                continue
            table, reasons = _refit(human, synthetic[subgroup, level])
            sim_tables[formula, subgroup, level].append(table)
            failures[formula, subgroup, level].update(reasons)
    recoveries = {
        key: human
        if isinstance(human, str)
        else coefficient_recovery(
            human.table, sim_tables[key], alpha=alpha, exclude=NOT_FINDINGS
        )
        for key, human in human_fits.items()
    }
    return recoveries, failures


def _refit(
    human: Fit, rows: pd.DataFrame
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """A replicate's coefficient table and the (term, reason) of each term it cannot estimate."""
    try:
        refitted = human.refit(rows)
    except (EstimationError, DataError) as exc:
        return human.table.iloc[0:0], [(term, str(exc)) for term in human.table["term"]]
    reasons = [
        (term, "not estimable in the replicate (aliased)") for term in refitted.aliased
    ]
    return refitted.table, reasons


def _coefficients_table(
    recoveries: dict[Key, Recovery | str], failures: dict[Key, Counter]
) -> pd.DataFrame:
    """One row per (formula, subgroup, level, term), with the commonest failure reason."""
    frames = []
    for (formula, subgroup, level), recovery in recoveries.items():
        if isinstance(recovery, str):
            continue
        terms = recovery.terms.copy()
        terms.insert(0, "level", level)
        terms.insert(0, "subgroup", subgroup)
        terms.insert(0, "formula", formula)
        counts = failures[formula, subgroup, level]
        terms["failure"] = [_commonest(counts, term) for term in terms["term"]]
        frames.append(terms)
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["formula"])
    )


def _commonest(reasons: Counter, term: str) -> str:
    """The most frequent failure reason recorded for ``term``, or an empty string."""
    counts = Counter({reason: n for (t, reason), n in reasons.items() if t == term})
    return counts.most_common(1)[0][0] if counts else ""


RECOVERY_COLUMNS = [
    "formula",
    "subgroup",
    "level",
    "n_terms",
    "sign_f1",
    "false_positive_rate",
    "coverage",
    "failure",
]


def _recovery_table(recoveries: dict[Key, Recovery | str]) -> pd.DataFrame:
    """Sign-F1, false-positive rate and coverage per (formula, subgroup, level)."""
    rows = []
    for (formula, subgroup, level), recovery in recoveries.items():
        row = {"formula": formula, "subgroup": subgroup, "level": level}
        if isinstance(recovery, str):
            rows.append({**row, "n_terms": 0, "failure": recovery})
            continue
        rows.append(
            {
                **row,
                "n_terms": len(recovery.terms),
                "sign_f1": recovery.sign_f1,
                "false_positive_rate": recovery.false_positive_rate,
                "coverage": recovery.coverage,
                "failure": "",
            }
        )
    return pd.DataFrame(rows, columns=RECOVERY_COLUMNS)


# --- distributions, variance, heterogeneity, coherence ------------------------------

Split = dict[Group, pd.DataFrame]


def _distributions(plan: _Plan, human: Split, replicates: list[Split]) -> pd.DataFrame:
    """JSD between the human and each replicate's answers, per item and group (mean over reps)."""
    rows = []
    for group, people in human.items():
        sims = [replicate[group] for replicate in replicates]
        for name in plan.study.item_names:
            answered = [sim[name] for sim in sims if sim[name].notna().any()]
            rows.append(
                {
                    "item": name,
                    "subgroup": group[0],
                    "level": group[1],
                    "n_human": int(people[name].notna().sum()),
                    "n_sim": _mean([sim[name].notna().sum() for sim in sims]),
                    "jsd": _mean([jsd(people[name], answers) for answers in answered])
                    if people[name].notna().any()
                    else math.nan,
                }
            )
    return pd.DataFrame(
        rows, columns=["item", "subgroup", "level", "n_human", "n_sim", "jsd"]
    )


def _variance(plan: _Plan, human: Split, replicates: list[Split]) -> pd.DataFrame:
    """Variance of each item, human vs simulated, per group; ratio is the mean per-replicate ratio."""
    rows = []
    for group, people in human.items():
        sims = [replicate[group] for replicate in replicates]
        for name in plan.study.item_names:
            rows.append(
                {
                    "item": name,
                    "subgroup": group[0],
                    "level": group[1],
                    "human_var": float(people[name].var()),
                    "sim_var": _mean([sim[name].var() for sim in sims]),
                    "ratio": _mean(
                        [variance_ratio(sim[name], people[name]) for sim in sims]
                    ),
                }
            )
    return pd.DataFrame(
        rows, columns=["item", "subgroup", "level", "human_var", "sim_var", "ratio"]
    )


def _heterogeneity(plan: _Plan, human: Split, replicates: list[Split]) -> pd.DataFrame:
    """Distinct response patterns and their entropy over the pattern items, per group."""
    items = list(plan.pattern_items)
    rows = []
    for group, people in human.items():
        own = heterogeneity(people, items)
        sims = [heterogeneity(replicate[group], items) for replicate in replicates]
        rows.append(
            {
                "subgroup": group[0],
                "level": group[1],
                "n_human": own.n,
                "n_sim": _mean([h.n for h in sims]),
                "unique_patterns_human": own.unique_patterns,
                "unique_patterns_sim": _mean([h.unique_patterns for h in sims]),
                "entropy_human": own.entropy,
                "entropy_sim": _mean([h.entropy for h in sims]),
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
    yet discloses, low concern yet refuses) also gets one ``rule`` row per rule.
    """
    rows = []
    for (belief, action), rules in _rules_by_pair(plan.study.coherence).items():
        scoped = [
            (
                "pair",
                " or ".join(f"({r})" for r in rules) if len(rules) > 1 else rules[0],
            )
        ]
        scoped += [("rule", rule) for rule in rules] if len(rules) > 1 else []
        for scope, rule in scoped:
            pair = Coherence(belief=belief, action=action, rule=rule)
            for group, people in human.items():
                sims = [replicate[group] for replicate in replicates]
                rows.append(
                    {
                        "belief": belief,
                        "action": action,
                        "rule": rule,
                        "scope": scope,
                        "subgroup": group[0],
                        "level": group[1],
                        "n_human": len(people),
                        "n_sim": _mean([len(sim) for sim in sims]),
                        "incoherence_human": incoherence_rate(people, pair),
                        "incoherence_sim": _mean(
                            [incoherence_rate(sim, pair) for sim in sims]
                        ),
                    }
                )
    return pd.DataFrame(rows, columns=COHERENCE_COLUMNS)


def _rules_by_pair(coherence: Sequence[Coherence]) -> dict[tuple[str, str], list[str]]:
    """The declared rules grouped by (belief, action), in declaration order."""
    pairs: dict[tuple[str, str], list[str]] = {}
    for entry in coherence:
        pairs.setdefault((entry.belief, entry.action), []).append(entry.rule)
    return pairs


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
    return table[(table["subgroup"] == OVERALL) & (table["level"] == OVERALL)]


def _first(column: pd.Series) -> float:
    """The single overall value of a column, NaN if the table is empty."""
    return float(column.iloc[0]) if len(column) else math.nan


def _frame_to_json(frame: pd.DataFrame) -> dict[str, Any]:
    """A JSON-ready dict of a frame: columns, dtypes and rows (NaN as null)."""
    data = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
    return {
        "columns": [str(c) for c in frame.columns],
        "dtypes": {str(c): str(t) for c, t in frame.dtypes.items()},
        "data": data,
    }


def _frame_from_json(raw: dict[str, Any]) -> pd.DataFrame:
    """Inverse of ``_frame_to_json``."""
    frame = pd.DataFrame(raw["data"], columns=raw["columns"])
    return frame.astype(raw["dtypes"]) if len(frame.columns) else frame
