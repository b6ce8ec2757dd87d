"""What a validation found: the ``Validation`` result, its decisions and its ranking.

The headline metrics are those of the registry ``simval.headline.HEADLINE`` (each with
its label, the direction in which it is better, its reference and its definition);
``summary()``, ``summary_table``, ``rank``, the leaderboards, the command's printed
table and the report all read it. The three-way decision per formula (``decide``) and
the sentence that states it (``verdict_sentence``) live here, beside the numbers they
are derived from, so a report can only repeat them. Nothing here runs a simulator or
fits a model, and nothing here writes a report (``simval.report`` reads this module).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from html import escape
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from simval.errors import DataError, OptionError
from simval.families import EQUATION_SEPARATOR, THRESHOLD_PREFIX
from simval.headline import HEADLINE, METRICS, Direction
from simval.metrics import simulated_interval
from simval.study import Study, study_from_dict, study_to_dict

OVERALL = "overall"
"""The ``subgroup`` and ``level`` of rows that cover every respondent."""

NOT_FINDINGS = ("Intercept",)
"""Terms kept in the coefficient tables but left out of every score and test (with a
multinomial model's per-level intercepts and an ordered model's thresholds:
``is_finding``)."""


def is_finding(term: str) -> bool:
    """Whether a coefficient is one of the study's findings: not an intercept (one per
    outcome level in a multinomial model) nor an ordered model's threshold, which only
    place the outcome's scale."""
    base = term.split(EQUATION_SEPARATOR)[0]
    return base not in NOT_FINDINGS and not term.startswith(THRESHOLD_PREFIX)


CONSISTENT = "consistent"
INCONSISTENT = "inconsistent"
UNDETERMINED = "undetermined"
DECISIONS = (CONSISTENT, INCONSISTENT, UNDETERMINED)
"""The three-way decision per formula: equivalence shown / equality rejected / neither."""

MAX_FAILED_SHARE = 0.5
"""A formula whose model fails (separation, constant outcome) in more than this share of
the replicates is inconsistent: the simulated answers cannot carry the study's analysis."""


@dataclass(frozen=True)
class Validation:
    """Human vs simulated respondents on every axis, overall and per subgroup.

    Every table has ``subgroup`` and ``level`` columns; rows about all respondents
    have both set to ``"overall"``. Simulated figures are means over the replicate
    samples. ``small`` marks subgroup cells below the minimum size (kept in the
    tables, left out of headline numbers). Columns:

    - ``coefficients``: formula, subgroup, level, term, the human estimate
      (human_estimate, human_std_error, human_p_value, human_ci_low, human_ci_high,
      human_class), sim_estimate, sim_std_error, sim_class, the difference synthetic
      minus human (diff, diff_std_error, diff_ci_low, diff_ci_high, diff_z,
      diff_p_value), margin, equivalence_p_value, coverage (share of replicates whose
      difference CI contains 0), se_ratio, sign_agree, sig_agree, n_reps, n_failed
      (``metrics.coefficient_recovery`` defines each), equivalence_limit, sim_ci_low,
      sim_ci_high (sim_estimate ± the normal quantile times sim_std_error), failure
      (the commonest reason a replicate could not estimate it).
    - ``recovery``: formula, subgroup, level, n_human, nobs_human, nobs_sim, small,
      n_terms, sign_f1, false_positive_rate, coverage, wald_statistic, wald_df,
      wald_p_value, wald_p_adjusted (Holm over the subgroup cells of the formula),
      equivalence_p_value, decision, failed_share, failure (why the human model could
      not be estimated there, else empty).
    - ``verdicts``: the overall rows, one per formula: formula, decision,
      wald_statistic, wald_df, wald_p_value, equivalence_p_value, margin, n_terms,
      nobs_human, nobs_sim, failed_share, reason.
    - ``replicate_coefficients``: rep, formula, term, estimate, std_error, p_value, nobs
      (every replicate's overall fit).
    - ``distributions``: item, subgroup, level, n_human, n_sim, small, jsd, wasserstein.
    - ``variance``: item, subgroup, level, human_var, sim_var, ratio (geometric mean of
      the per-replicate ratios).
    - ``heterogeneity``: subgroup, level, n_human, n_sim, small, unique_patterns_human,
      unique_patterns_sim, entropy_human, entropy_sim (Miller–Madow corrected).
    - ``coherence``: belief, action, rule, scope, subgroup, level, n_human, n_sim,
      incoherence_human, incoherence_sim.
    - ``shares``: item, code, label, human, sim (share of each option among the
      answers; sim is the mean over replicates).
    - ``headline``: metric, label, value, ci_low, ci_high, mcse, reference: a row per
      ``HEADLINE`` metric (each computed by its ``Metric.value``), then the humans'
      own levels (``HUMAN_LEVELS``, reference empty); ``draws``: metric, draw, value
      (the bootstrap draws behind the CIs, paired across validations with the same
      seed); ``replicate_metrics``: metric, rep, value. ``subgroup_jsd``: the mean JSD
      per subgroup cell, whose spread is the ``subgroup_jsd_gap``.
    - ``notes``: nonresponse (share of missing answers per item), unparseable (per item,
      the answers of this validation's replicates that the simulator could not read;
      they are missing, so also in nonresponse), reference (the fresh-sample
      reference's scheme, in words), reference_redraws (how many of its
      pseudo-populations were redrawn because a model the humans fit failed in half
      its replicates), reference_recovery (per formula, the reference's coverage,
      false-positive rate, Wald p and failed share), warnings (few clusters, subgroup cells the human model cannot fit); ``versions``: package versions; ``fingerprint``: SHA-256 of the
      human data.
    - ``identity``: what the simulator was (``identity_of``: model, adapter, dtype,
      mode and, for a served model, API; empty for simulators without one and for
      validations saved before it was kept); ``prompts``: item -> the prompt the
      simulator was shown for the first human respondent (``example_prompts``; empty
      for simulators that read no prompt).
    """

    study: Study
    coefficients: pd.DataFrame
    recovery: pd.DataFrame
    verdicts: pd.DataFrame
    replicate_coefficients: pd.DataFrame
    distributions: pd.DataFrame
    variance: pd.DataFrame
    heterogeneity: pd.DataFrame
    coherence: pd.DataFrame
    shares: pd.DataFrame
    headline: pd.DataFrame
    draws: pd.DataFrame
    replicate_metrics: pd.DataFrame
    simulator: str
    n_human: int
    reps: int
    alpha: float
    seed: int | None
    pattern_items: tuple[str, ...]
    min_subgroup_n: int
    notes: dict[str, Any]
    versions: dict[str, str]
    fingerprint: str
    identity: dict[str, str] = field(default_factory=dict)
    prompts: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """Headline numbers over all respondents, flat: each metric with ``_ci_low``,
        ``_ci_high`` and ``_reference`` beside it, plus the humans' own levels."""
        out: dict[str, float] = {"n_human": self.n_human, "reps": self.reps}
        for row in self.headline.itertuples(index=False):
            out[row.metric] = row.value
            out[f"{row.metric}_ci_low"] = row.ci_low
            out[f"{row.metric}_ci_high"] = row.ci_high
            if row.metric in METRICS:
                out[f"{row.metric}_reference"] = row.reference
        return out

    @property
    def summary_table(self) -> pd.DataFrame:
        """``summary()`` as a tidy frame, a row per headline metric and then the humans'
        own levels: metric, label, value, ci_low, ci_high, reference (the metric's value
        for a perfect simulator; NaN for the humans' levels)."""
        table = self.headline[["metric", "label", "value", "ci_low", "ci_high"]].copy()
        table["reference"] = [
            reference if metric in METRICS else math.nan
            for metric, reference in zip(
                self.headline["metric"], self.headline["reference"]
            )
        ]
        return table.reset_index(drop=True)

    def _repr_html_(self) -> str:
        """Jupyter's display: the simulator, each formula's verdict sentence and the
        headline metrics with their CIs, numbers as the report prints them."""
        shown = ", ".join(f"{k} {v}" for k, v in self.identity.items())
        return summary_html(
            heading=f"Validation of {self.simulator}",
            about=f"{shown + '; ' if shown else ''}{self.n_human} humans, "
            f"{self.reps} replicates, alpha {number(self.alpha)}, seed {self.seed}",
            lines=[
                verdict_sentence(row, simulator=self.simulator)
                for row in self.verdicts.to_dict("records")
            ]
            or ["The study declares no regression models."],
            columns=("metric", "value [CI]", REFERENCE_ROW),
            rows=[
                (row.label, interval_text(row.value, row.ci_low, row.ci_high),
                 number(row.reference))
                for row in self.summary_table.itertuples(index=False)
            ],
        )  # fmt: skip

    def decision(self, formula: str) -> str:
        """The three-way decision for ``formula`` (one of ``DECISIONS``)."""
        rows = self.verdicts[self.verdicts["formula"] == formula]
        if rows.empty:
            raise OptionError(
                f"formula {formula!r} is not among this validation's: "
                + ", ".join(map(repr, self.verdicts["formula"]))
            )
        return str(rows["decision"].iloc[0])

    def to_json(self) -> str:
        """Serialise every field to JSON; ``Validation.from_json`` reads it back."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, pd.DataFrame):
                value = _frame_to_json(value)
            elif isinstance(value, Study):
                value = study_to_dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return json.dumps(_json_safe(out), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Validation:
        """Rebuild a Validation from the output of ``to_json``."""
        raw = json.loads(text)
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in raw and f.name in ("identity", "prompts"):
                continue  # saved before simulators were described: left empty
            value = raw[f.name]
            if f.name == "study":
                value = study_from_dict(value)
            elif isinstance(value, dict) and "dtypes" in value:
                value = _frame_from_json(value)
            elif isinstance(value, list):
                value = tuple(value)
            values[f.name] = value
        coefficients = values["coefficients"]
        if "sim_ci_low" not in coefficients:  # saved before the interval was a column
            interval = simulated_interval(coefficients, alpha=values["alpha"])
            at = coefficients.columns.get_loc("failure")
            for offset, (name, column) in enumerate(interval.items()):
                coefficients.insert(at + offset, name, column)
        return cls(**values)

    @property
    def subgroup_jsd(self) -> pd.DataFrame:
        """A row per subgroup cell: subgroup, level, n_human (the most over its items),
        small, jsd (the mean over items of the cell's JSD, as ``distributions`` has it).
        The worst minus the best of the cells not small is the headline
        ``subgroup_jsd_gap``."""
        rows = self.distributions[self.distributions["subgroup"] != OVERALL]
        columns = ["subgroup", "level", "n_human", "small", "jsd"]
        if rows.empty:
            return pd.DataFrame(columns=columns)
        cells = rows.groupby(["subgroup", "level"], sort=False)
        return cells.agg(
            n_human=("n_human", "max"), small=("small", "any"), jsd=("jsd", "mean")
        ).reset_index()[columns]


def identity_of(simulator: Any) -> dict[str, str]:
    """What a report names a simulator by: its ``identity`` record (a frozen dataclass
    or mapping of model, adapter, dtype, mode, api) as text, fields without a value
    left out; empty for a simulator without one (``BootstrapSimulator``)."""
    record = getattr(simulator, "identity", None)
    if record is None:
        return {}
    values = asdict(record) if is_dataclass(record) else dict(record)
    return {str(k): str(v) for k, v in values.items() if v not in (None, "")}


def example_prompts(
    simulator: Any, personas: pd.DataFrame, items: Sequence[Any]
) -> dict[str, str]:
    """Per item, the prompt ``simulator`` is shown for the first persona row (the first
    human respondent); empty for a simulator that reads no prompt."""
    prompt = getattr(simulator, "prompt", None)
    if prompt is None or personas.empty:
        return {}
    first = personas.iloc[0]
    return {item.name: str(prompt(first, item)) for item in items}


def summary_html(
    *,
    heading: str,
    about: str,
    lines: Sequence[str],
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    labels: int = 1,
) -> str:
    """A compact HTML summary for Jupyter (``_repr_html_`` of ``Validation`` and
    ``Rectified``): a bold heading and what it is about, sentences as a list, then a
    table whose first ``labels`` cells are text, the others right-aligned numbers;
    every text escaped."""
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    right = ' style="text-align:right"'
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{right if k >= labels else ''}>{escape(str(c))}</td>"
            for k, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return (
        f"<div><p><strong>{escape(heading)}</strong> ({escape(about)})</p>"
        f"<ul>{items}</ul><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></div>"
    )


def number(value: float | None, *, digits: int | None = 3) -> str:
    """A number for display, the one formatter of every report, leaderboard and summary:
    an integer (Python or numpy) without decimals, a float to ``digits`` places (so a
    column of one quantity reads alike: 0.000 beside 0.370; ``digits=0`` for counts
    held as floats), NaN or None as a dash. ``digits=None``: as short as exact (an
    option code: 1, 2.5)."""
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return "–"
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return f"{int(value):d}"
    value = float(value)
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if digits is None:
        return str(int(value)) if value.is_integer() else f"{value:g}"
    text = f"{value:.{digits}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text


def interval_text(
    value: float, low: float, high: float, *, digits: int | None = 3
) -> str:
    """ "value [low, high]" (``number``), or the value alone when the interval is missing."""
    if any(v is None or math.isnan(float(v)) for v in (low, high)):
        return number(value, digits=digits)
    return (
        f"{number(value, digits=digits)} "
        f"[{number(low, digits=digits)}, {number(high, digits=digits)}]"
    )


# --- decisions --------------------------------------------------------------------------


def decide(
    *,
    n_terms: int,
    failed_share: float,
    wald_p_value: float,
    equivalence_p_value: float,
    alpha: float,
    margin: float = math.nan,
    equivalence_bound: float = math.nan,
    consistent_attainable: bool = True,
    humans_needed: float = math.nan,
    wald_method: str = "chi-squared",
    reference_failed_share: float = 0.0,
    limiting_term: str = "",
) -> tuple[str, str]:
    """The decision for one formula and the reason, in this order of precedence.

    No term to compare: undetermined. The model fails in more than
    ``MAX_FAILED_SHARE`` of the replicates: inconsistent, unless it fails as often for
    a perfect simulator (the fresh reference's ``reference_failed_share`` at least
    ``MAX_FAILED_SHARE``), then undetermined: the model cannot be fitted at this n. Equivalence shown (every
    term's TOST p-value below alpha, an intersection–union test): consistent. The
    Wald test of equal coefficients rejects at alpha: inconsistent. Otherwise
    undetermined: the data cannot tell, which is never reported as agreement. The
    reason says which of two things an undetermined verdict is: too few humans to
    show equivalence at ``margin`` even for identical coefficients (not
    ``consistent_attainable``; ``humans_needed`` would make it attainable), or a
    difference too small to reject yet too large to fit the margin; every reason ends
    with what the data do show, the ``equivalence_bound``.
    """
    if n_terms == 0:
        return UNDETERMINED, "no term besides the intercept to compare"
    if failed_share > MAX_FAILED_SHARE and reference_failed_share >= MAX_FAILED_SHARE:
        return UNDETERMINED, (
            f"the model could not be estimated in {failed_share:.0%} of the replicates, "
            f"nor in {reference_failed_share:.0%} of a perfect simulator's (the fresh "
            "reference): it cannot be fitted reliably on samples of this size"
        )
    if failed_share > MAX_FAILED_SHARE:
        return INCONSISTENT, (
            f"the model could not be estimated on the simulated answers in "
            f"{failed_share:.0%} of the replicates"
        )
    shown = _shown_within(equivalence_bound)
    wald = (
        "Bonferroni p over the terms (too few rows or clusters for the joint test)"
        if wald_method == "bonferroni"
        else "Wald p"
    )
    if equivalence_p_value < alpha:
        return CONSISTENT, (
            f"every coefficient is within its margin of the humans' "
            f"({_p('equivalence p', equivalence_p_value)}){shown}"
        )
    if wald_p_value < alpha:
        return INCONSISTENT, (
            f"the coefficients differ from the humans' "
            f"({_p(wald, wald_p_value)}){shown}"
        )
    if not consistent_attainable:
        needed = (
            f"; about {humans_needed:,.0f} humans would make it attainable"
            if math.isfinite(humans_needed)
            else ""
        )
        if limiting_term:
            needed += f" (the least precise term: {limiting_term})"
        return UNDETERMINED, (
            f"no difference shown ({_p(wald, wald_p_value)}), and too few humans "
            f"to show equivalence within the margin of {margin:g} SD even for "
            f"identical coefficients{needed}{shown}"
        )
    return UNDETERMINED, (
        f"no difference shown ({_p(wald, wald_p_value)}), but the coefficients "
        f"are not shown within the margin of {margin:g} SD either "
        f"({_p('equivalence p', equivalence_p_value)}): a small real difference, "
        f"or too little information{shown}"
    )


def _shown_within(bound: float) -> str:
    """The positive statement the data allow: every coefficient within ±bound SD."""
    if not math.isfinite(bound):
        return ""
    return (
        f"; with these data the simulator's coefficients lie within ±{bound:.2f} SD "
        f"of the humans'"
    )


def verdict_sentence(row: Mapping[str, Any], *, simulator: str) -> str:
    """The plain-language verdict of one ``verdicts`` row: it restates the decision."""
    meaning = {
        CONSISTENT: "would lead to the same conclusions as the humans",
        INCONSISTENT: "would lead to different conclusions from the humans'",
        UNDETERMINED: "cannot be judged against these humans",
    }[row["decision"]]
    return (
        f"{simulator} on {row['formula']}: {row['decision']}: its simulated "
        f"respondents {meaning} ({row['reason']})."
    )


def _p(name: str, value: float) -> str:
    """A named p-value for a sentence: "Wald p = 0.012", "Wald p < 0.001", "Wald p n/a"."""
    if value is None or math.isnan(value):
        return f"{name} n/a"
    return f"{name} < 0.001" if value < 0.001 else f"{name} = {value:.3f}"


# --- comparing validations: the leaderboard ------------------------------------------------


def summary_table(validations: Mapping[str, Validation]) -> pd.DataFrame:
    """The headline metrics of several validations against the same humans, a row each,
    plus a ``human`` row with the humans' own levels and a ``fresh reference`` row with
    the metrics' reference values (from the first validation)."""
    if not validations:
        raise OptionError("summary_table needs at least one validation")
    _check_same_humans(validations)
    rows = {
        name: {m.name: v.summary()[m.name] for m in HEADLINE}
        for name, v in validations.items()
    }
    first = next(iter(validations.values())).summary()
    rows[REFERENCE_ROW] = {m.name: first[f"{m.name}_reference"] for m in HEADLINE}
    rows[HUMAN_ROW] = {m.name: first[m.human] for m in HEADLINE if m.human}
    table = pd.DataFrame.from_dict(
        rows, orient="index", columns=[m.name for m in HEADLINE]
    )
    table.index.name = "simulator"
    return table


HUMAN_ROW = "human"
REFERENCE_ROW = "fresh reference"
"""summary_table's reference rows: the humans' own levels; each metric's reference value."""


def score(
    values: np.ndarray, *, direction: Direction, target: np.ndarray | float
) -> np.ndarray:
    """Lower is better: the value, its negative, or its distance to the target."""
    values = np.asarray(values, dtype=float)
    if direction == "lowest":
        return values
    if direction == "highest":
        return -values
    if direction == "near_one":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(np.log(np.where(values > 0, values, np.nan)))
    return np.abs(values - target)


def samples(
    validation: Validation, name: str, *, uncertainty: str = "bootstrap"
) -> pd.Series:
    """A summary value's draws behind its CI: its bootstrap draws (``draws``, by draw) or,
    for ``uncertainty="replicates"``, its value per replicate (``replicate_metrics``)."""
    frame = (
        validation.draws if uncertainty == "bootstrap" else validation.replicate_metrics
    )
    key = "draw" if uncertainty == "bootstrap" else "rep"
    return frame[frame["metric"] == name].set_index(key)["value"]


def spread(values: np.ndarray, *, uncertainty: str) -> float:
    """The standard error that ``values`` (``samples``, or paired differences of them)
    give their estimate: their SD for bootstrap draws, SD / sqrt(n) for replicates (a
    mean over them); NaN with fewer than two finite values."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return math.nan
    sd = float(values.std(ddof=1))
    return sd if uncertainty == "bootstrap" else sd / math.sqrt(len(values))


def standard_error(validation: Validation, name: str) -> float:
    """The standard error of a headline metric's value (or a humans' own level, which is
    bootstrapped), from the draws its CI is made of (``spread``)."""
    kind = METRICS[name].uncertainty if name in METRICS else "bootstrap"
    return spread(samples(validation, name, uncertainty=kind), uncertainty=kind)


def paired_deltas(
    a: Validation, b: Validation, metric: str
) -> tuple[float, np.ndarray]:
    """Score of ``a`` minus score of ``b`` on ``metric`` (lower is better), and that
    difference in each bootstrap draw or replicate both share (the finite ones).

    Paired: both validations resampled the same respondents (bootstrap metrics) or
    drew the same replicate personas (replicate metrics), so the draws are those of
    the difference, not of two separate numbers.
    """
    spec = METRICS[metric]
    target = 1 - a.alpha
    series = [samples(v, metric, uncertainty=spec.uncertainty) for v in (a, b)]
    human = (
        samples(a, spec.human)
        if spec.human and spec.uncertainty == "bootstrap"
        else None
    )
    point = [v.summary()[metric] for v in (a, b)]
    human_point = a.summary()[spec.human] if spec.human else target
    diff = float(
        score(point[0], direction=spec.direction, target=human_point)
        - score(point[1], direction=spec.direction, target=human_point)
    )
    joined = pd.concat(series, axis=1, keys=["a", "b"]).dropna()
    if human is not None:
        joined = joined.join(human.rename("human"), how="inner")
    goal = joined["human"].to_numpy() if human is not None else human_point
    deltas = score(joined["a"], direction=spec.direction, target=goal) - score(
        joined["b"], direction=spec.direction, target=goal
    )
    return diff, deltas[np.isfinite(deltas)]


def paired_difference(
    a: Validation, b: Validation, metric: str, *, level: float = 0.95
) -> tuple[float, float, float]:
    """Score of ``a`` minus score of ``b`` on ``metric`` (lower is better) with its paired
    CI (``paired_deltas``): percentiles of the bootstrap draws, or a t interval over
    the replicates. Returns (difference, ci_low, ci_high)."""
    diff, deltas = paired_deltas(a, b, metric)
    if len(deltas) < 2:
        return diff, math.nan, math.nan
    if METRICS[metric].uncertainty == "bootstrap":
        low, high = np.quantile(deltas, [(1 - level) / 2, (1 + level) / 2])
        return diff, float(low), float(high)
    half = scipy.stats.t.ppf((1 + level) / 2, len(deltas) - 1) * deltas.std(ddof=1)
    half /= math.sqrt(len(deltas))
    return diff, float(deltas.mean() - half), float(deltas.mean() + half)


def rank(
    validations: Mapping[str, Validation],
    *,
    level: float = 0.95,
    references: Sequence[str] = (),
) -> pd.DataFrame:
    """Per metric, which simulators are best: ``"best"`` for one distinguishable from
    every other, ``"tie"`` for the best and those whose paired difference with it has
    a CI containing 0, else empty. Rows are simulators, columns the headline metrics;
    those named in ``references`` are never ranked (their rows stay empty)."""
    _check_same_humans(validations)
    check_references(references, names=list(validations))
    names = [name for name in validations if name not in references]
    marks = pd.DataFrame(
        "", index=list(validations), columns=[m.name for m in HEADLINE]
    )
    if not names:
        return marks
    for spec in HEADLINE:
        summaries = {n: validations[n].summary() for n in names}
        target = (
            summaries[names[0]][spec.human]
            if spec.human
            else 1 - validations[names[0]].alpha
        )
        scores = {
            n: float(
                score(summaries[n][spec.name], direction=spec.direction, target=target)
            )
            for n in names
        }
        best = leader(scores)
        if best is None:
            continue
        differences = {
            n: paired_difference(
                validations[n], validations[best], spec.name, level=level
            )
            for n in names
            if n != best and math.isfinite(scores[n])
        }
        for name, mark in best_marks(best, differences).items():
            marks.at[name, spec.name] = mark
    return marks


def check_references(references: Sequence[str], *, names: Sequence[str]) -> None:
    """Every name in ``references`` (rows shown and never ranked) is among ``names``."""
    unknown = [name for name in references if name not in names]
    if unknown:
        raise OptionError(
            f"references {', '.join(map(repr, unknown))} are not among the validations: "
            + ", ".join(map(repr, names))
        )


def leader(scores: Mapping[str, float]) -> str | None:
    """The name with the lowest finite score; None when fewer than two are finite
    (nothing to rank)."""
    finite = [name for name, value in scores.items() if math.isfinite(value)]
    return min(finite, key=lambda name: scores[name]) if len(finite) > 1 else None


def best_marks(
    best: str, differences: Mapping[str, tuple[float, float, float]]
) -> dict[str, str]:
    """``best`` marked "best" when its difference (value, ci_low, ci_high) with every
    other is distinguishable from 0, else "tie" with each one that is not."""
    tied = [
        name
        for name, difference in differences.items()
        if not _distinguishable(difference)
    ]
    return {name: "tie" if tied else "best" for name in (best, *tied)}


def _distinguishable(difference: tuple[float, float, float]) -> bool:
    """A paired difference whose CI lies wholly on one side of 0."""
    _, low, high = difference
    return bool(math.isfinite(low) and math.isfinite(high) and (low > 0 or high < 0))


def _check_same_humans(validations: Mapping[str, Validation]) -> None:
    """Validations compared side by side must share the human data, seed and alpha."""
    first_name, first = next(iter(validations.items()))
    for name, v in validations.items():
        if not isinstance(v, Validation):
            raise DataError(f"{name!r} is a {type(v).__name__}, not a Validation")
        for attribute in ("fingerprint", "seed", "alpha", "reps"):
            if getattr(v, attribute) != getattr(first, attribute):
                raise DataError(
                    f"validations {first_name!r} and {name!r} differ in {attribute}; "
                    "compare simulators on the same human data with the same seed, "
                    "alpha and reps"
                )


# --- JSON ---------------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    """NaN and infinities as None, numpy scalars as Python numbers, recursively."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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
