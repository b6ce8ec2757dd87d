"""The leaderboard: simulators side by side on the headline metrics, the best ones marked.

The metrics, their labels and what "better" means come from ``simval.headline.HEADLINE``;
the marks from ``simval.results.rank``: "best" (bold) for a simulator distinguishable
from every other by a paired-difference CI, "tie" (italic) for the best and every
simulator not distinguishable from it. The fresh-sample reference, the humans' own
levels and any validation named in ``references`` (e.g. the resampling reference) are
shown beside the simulators and never marked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from simval.aggregate import ACROSS, MIN_TASKS, SAMPLING_ERROR, TEST, Aggregate
from simval.errors import DataError, OptionError
from simval.headline import HEADLINE, Metric
from simval.report.blocks import Cell, Table, cell, interval, number
from simval.report.pages import render_leaderboard
from simval.results import (
    HUMAN_ROW,
    REFERENCE_ROW,
    Validation,
    check_references,
    rank,
    summary_table,
    verdict_sentence,
)

GAIN = "ess_gain"
GAIN_LABEL = "effective-sample-size gain (PPI++)"
GAIN_LEGEND = (
    "the median over the formulas' terms (intercepts aside) of the humans whose own "
    "fit is as precise as the rectified one, per labeled human (simval.rectify; 1: "
    "the simulator adds nothing, the humans' own level); a point estimate, unmarked."
)

if TYPE_CHECKING:
    from simval.rectify import Rectified

RESERVED = (HUMAN_ROW, REFERENCE_ROW)
"""Row names of the leaderboard's references; no validation may take them."""

_BETTER = {
    "lowest": "lowest",
    "highest": "highest",
    "near_one": "closest to 1 (log scale)",
    "near_human": "closest to the humans' own level",
    "near_nominal": "closest to the nominal {nominal:g}",
}
"""What "better" means, in words, for each of ``simval.results.Direction``."""


def check_validations(
    validations: Mapping[str, Validation], *, references: Sequence[str] = ()
) -> None:
    """Validations shown side by side: a non-empty mapping of names to Validations of the
    same study on the same humans (fingerprint, seed, alpha, reps: ``summary_table``'s
    check), no name reserved for a reference row, every ``references`` name present."""
    if not isinstance(validations, Mapping) or not validations:
        raise OptionError(
            "a report or leaderboard needs a non-empty mapping of name -> Validation"
        )
    taken = [name for name in validations if name in RESERVED]
    if taken:
        raise OptionError(
            f"{taken[0]!r} names a reference row ({' and '.join(map(repr, RESERVED))}); "
            "give the simulator another name"
        )
    check_references(references, names=list(validations))
    # a Validation each, of the same humans with the same seed, alpha and reps
    summary_table(validations)
    first_name, first = next(iter(validations.items()))
    for name, validation in validations.items():
        if validation.study != first.study:
            raise DataError(
                f"validations {first_name!r} and {name!r} are of different studies; "
                "a report compares simulators on one study"
            )


def leaderboard_marks(
    validations: Mapping[str, Validation], *, references: Sequence[str] = ()
) -> pd.DataFrame:
    """``rank`` over the validations not named in ``references`` (at the validations'
    1 − alpha), with an empty row for each reference: rows are validations, columns metrics."""
    level = 1 - next(iter(validations.values())).alpha
    return rank(validations, level=level, references=references)


def headline_table(
    validations: Mapping[str, Validation],
    marks: pd.DataFrame,
    *,
    rectified: Mapping[str, Rectified] | None = None,
) -> Table:
    """A row per headline metric: each simulator's value [CI] (marked), then the fresh
    reference's value and the humans' own level [CI] where there is one; with
    ``rectified``, a last row with each simulator's effective-sample-size gain."""
    first = next(iter(validations.values()))
    nominal = 1 - first.alpha
    reference = summary_table(validations).loc[REFERENCE_ROW]
    human = first.summary()
    rows = []
    for metric in HEADLINE:
        rows.append(
            (
                Cell(metric.label),
                Cell(better(metric, nominal=nominal)),
                *(
                    _value_cell(
                        v.summary(), metric.name, mark=marks.at[name, metric.name]
                    )
                    for name, v in validations.items()
                ),
                cell(reference[metric.name]),
                _value_cell(human, metric.human)
                if metric.human
                else Cell("–", numeric=True),
            )
        )
    if rectified:
        rows.append(
            (
                Cell(GAIN_LABEL),
                Cell("highest"),
                *(
                    cell(rectified[name].summary()["median_gain"], digits=2)
                    if name in rectified
                    else Cell("–", numeric=True)
                    for name in validations
                ),
                Cell("–", numeric=True),
                Cell("1", numeric=True),
            )
        )
    return Table(
        ("metric", "better", *validations, REFERENCE_ROW, HUMAN_ROW), tuple(rows)
    )


def better(metric: Metric, *, nominal: float) -> str:
    """What "better" means for ``metric``, in words."""
    return _BETTER[metric.direction].format(nominal=nominal)


def legend(
    validations: Mapping[str, Validation], *, references: Sequence[str] = ()
) -> str:
    """What the cells, the marks and the reference columns mean."""
    first = next(iter(validations.values()))
    level = f"{1 - first.alpha:.0%}"
    never = [*references, REFERENCE_ROW, HUMAN_ROW]
    return (
        f"Each cell: the value and its {level} confidence interval (respondents "
        "resampled for the answer metrics; over the replicate samples for sign-F1, "
        "false-positive rate and coverage). Bold: best, distinguishable from every other "
        f"simulator by a paired-difference {level} CI; italic: tied for best, not "
        f"distinguishable from the best. {REFERENCE_ROW}: the metric's value for a "
        "perfect simulator (fresh answers from the human population) on the same "
        f"personas; {HUMAN_ROW}: the humans' own level, the target of the metrics judged "
        f"closest to it. Never marked: {', '.join(never)}."
    )


SIGNS = {"best": "*", "tie": "~", "": ""}
"""How plain text marks a cell: * best, ~ tied for best (bold and italic elsewhere)."""


def leaderboard_text(
    validations: Mapping[str, Validation], *, references: Sequence[str] = ()
) -> str:
    """The leaderboard as plain text (what ``simval validate``, ``bench`` and ``demo``
    print): a row per headline metric with each simulator's value [CI] (``SIGNS``
    marks), the fresh reference's value and the humans' own level [CI]; a legend line;
    each formula's decision per simulator (``verdict_sentence``); each warning once,
    naming the simulators it concerns unless it concerns them all."""
    marks = leaderboard_marks(validations, references=references)
    reference = summary_table(validations).loc[REFERENCE_ROW]
    summaries = {name: v.summary() for name, v in validations.items()}
    human = next(iter(summaries.values()))
    rows = {
        metric.label: {
            **{
                name: _value_cell(summary, metric.name).text
                + SIGNS[marks.at[name, metric.name]]
                for name, summary in summaries.items()
            },
            REFERENCE_ROW: number(reference[metric.name]),
            HUMAN_ROW: _value_cell(human, metric.human).text if metric.human else "",
        }
        for metric in HEADLINE
    }
    never = ", ".join((*references, REFERENCE_ROW, HUMAN_ROW))
    legend_line = (
        "value [CI]; * best among the models, ~ tied for best (paired-difference CIs); "
        f"{REFERENCE_ROW}: a perfect simulator's value; never marked: {never}"
    )
    lines = [pd.DataFrame.from_dict(rows, orient="index").to_string(), legend_line]
    formulas = dict.fromkeys(
        f for v in validations.values() for f in v.verdicts["formula"]
    )
    for formula in formulas:
        for name, v in validations.items():
            for row in v.verdicts[v.verdicts["formula"] == formula].to_dict("records"):
                lines.append(verdict_sentence(row, simulator=name))
    flagged: dict[str, list[str]] = {}
    for name, v in validations.items():
        for warning in v.notes.get("warnings", ()):
            flagged.setdefault(warning, []).append(name)
    for warning, names in flagged.items():
        who = "" if len(names) == len(validations) else f" ({', '.join(names)})"
        lines.append(f"warning{who}: {warning}")
    return "\n".join(lines)


def write_leaderboard(
    validations: Mapping[str, Validation],
    out_dir: str | Path,
    *,
    stem: str = "leaderboard",
    references: Sequence[str] = (),
    rectified: Mapping[str, Rectified] | None = None,
) -> tuple[Path, Path, Path]:
    """CSV, Markdown and HTML of the leaderboard of ``validations`` (name -> Validation
    against the same humans with the same seed); ``references`` are shown, never marked.

    The CSV has a row per validation plus the ``fresh reference`` and ``human`` rows
    (``simval.results.summary_table``), each metric at full precision with its
    ``_ci_low`` and ``_ci_high``, then ``best_in`` and ``tied_in``: the ";"-joined
    metrics where the row is best or tied for best. With ``rectified`` (name -> its
    ``simval.rectify`` result), an ``ess_gain`` column and row: each simulator's median
    effective-sample-size gain over the formulas' terms (intercepts aside), what its
    answers are worth for valid inference; unmarked. Returns the (csv, md, html) paths.
    """
    check_validations(validations, references=references)
    marks = leaderboard_marks(validations, references=references)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = tuple(folder / f"{stem}.{suffix}" for suffix in ("csv", "md", "html"))
    frame = leaderboard_frame(validations, marks)
    if rectified:
        frame.insert(len(HEADLINE) * 3, GAIN, [
            rectified[n].summary()["median_gain"] if n in rectified else float("nan")
            for n in frame.index
        ])  # fmt: skip
    frame.to_csv(paths[0])
    text = legend(validations, references=references)
    if rectified:
        text += f" {GAIN_LABEL}: {GAIN_LEGEND}"
    shown = headline_table(validations, marks, rectified=rectified)
    for path, fmt in zip(paths[1:], ("md", "html")):
        path.write_text(
            render_leaderboard(shown, legend=text, fmt=fmt), encoding="utf-8"
        )
    return paths


def leaderboard_frame(
    validations: Mapping[str, Validation], marks: pd.DataFrame
) -> pd.DataFrame:
    """The CSV's table: ``summary_table`` with each metric's CI beside it, and the marks."""
    table = summary_table(validations)
    human = next(iter(validations.values())).summary()
    columns: dict[str, list[float]] = {}
    for metric in HEADLINE:
        columns[metric.name] = table[metric.name].tolist()
        for end in ("ci_low", "ci_high"):
            columns[f"{metric.name}_{end}"] = [
                _ci_end(validations, human, name, metric, end) for name in table.index
            ]
    frame = pd.DataFrame(columns, index=table.index)
    for column, kind in (("best_in", "best"), ("tied_in", "tie")):
        frame[column] = [
            ";".join(c for c in marks.columns if marks.at[name, c] == kind)
            if name in marks.index
            else ""
            for name in table.index
        ]
    return frame


def _ci_end(
    validations: Mapping[str, Validation],
    human: dict[str, float],
    name: str,
    metric: Metric,
    end: str,
) -> float:
    """One end of a row's CI: a validation's own, the humans' for their levels, else NaN."""
    if name in validations:
        return validations[name].summary()[f"{metric.name}_{end}"]
    if name == HUMAN_ROW and metric.human:
        return human[f"{metric.human}_{end}"]
    return float("nan")


def _value_cell(summary: dict[str, float], key: str, *, mark: str = "") -> Cell:
    """ "value [ci_low, ci_high]" of one summary key, marked."""
    text = interval(summary[key], summary[f"{key}_ci_low"], summary[f"{key}_ci_high"])
    return Cell(text, mark=mark, numeric=True)


def write_aggregate_leaderboard(
    result: Aggregate, out_dir: str | Path, *, stem: str = "leaderboard"
) -> tuple[Path, Path, Path]:
    """CSV, Markdown and HTML of a benchmark across tasks (``simval.aggregate``).

    The CSV is ``result.table`` (a row per simulator, metric and task, then per
    simulator and metric over the tasks, ``task`` = "mean over tasks"); the pages a
    row per metric and simulator: its value [CI] on each task (marked as that task's
    leaderboard marks it), the mean over the tasks [CI] (marked where distinguishable
    over the tasks), the tasks it is over and the tasks won. Returns the paths.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = tuple(folder / f"{stem}.{suffix}" for suffix in ("csv", "md", "html"))
    result.table.to_csv(paths[0], index=False)
    shown = aggregate_table(result)
    for path, fmt in zip(paths[1:], ("md", "html")):
        text = render_leaderboard(shown, legend=aggregate_legend(result), fmt=fmt)
        path.write_text(text, encoding="utf-8")
    return paths


def aggregate_table(result: Aggregate) -> Table:
    """A row per headline metric and leaderboard row: value [CI] per task, the mean over
    the tasks [CI], over how many tasks, and (for the simulators ranked) tasks won."""
    cells = result.table.set_index(["simulator", "metric", "task"])
    unranked = {*result.references, REFERENCE_ROW, HUMAN_ROW}
    rows = []
    for metric in HEADLINE:
        for i, name in enumerate(result.simulators):
            shown = [
                cells.loc[(name, metric.name, task)] for task in (*result.tasks, ACROSS)
            ]
            across = shown[-1]
            rows.append(
                (
                    Cell(_aggregate_label(metric) if i == 0 else ""),
                    Cell(better(metric, nominal=1 - result.alpha) if i == 0 else ""),
                    Cell(name),
                    *(
                        Cell(
                            interval(row["value"], row["ci_low"], row["ci_high"]),
                            mark=row["mark"],
                            numeric=True,
                        )
                        for row in shown
                    ),
                    Cell(f"{across['n_tasks']} of {len(result.tasks)}", numeric=True),
                    Cell(
                        "–" if name in unranked else str(across["wins"]), numeric=True
                    ),
                )
            )
    return Table(
        ("metric", "better", "simulator", *result.tasks, ACROSS, "tasks", "wins"),
        tuple(rows),
    )


def aggregate_text(result: Aggregate) -> str:
    """The leaderboard across tasks as plain text (what ``simval bench --task`` prints):
    a row per headline metric with each row's mean over the tasks [CI], ``SIGNS``
    marks over the tasks, and a legend line."""
    across = result.table[result.table["task"] == ACROSS]
    cells = across.set_index(["metric", "simulator"])
    rows = {
        metric.label: {
            name: interval(
                *cells.loc[(metric.name, name), ["value", "ci_low", "ci_high"]]
            )
            + SIGNS[cells.at[(metric.name, name), "mark"]]
            for name in result.simulators
        }
        for metric in HEADLINE
    }
    legend_line = (
        "mean [CI] over the tasks where defined; * best, ~ tied for best over the "
        "tasks (t interval over the tasks' paired differences, T - 1 df; none below "
        f"{MIN_TASKS} tasks); sign-F1, false-positive rate and coverage CIs over the "
        "replicates only; each task's leaderboard and report in its folder"
    )
    table = pd.DataFrame.from_dict(rows, orient="index").to_string()
    return f"mean over the tasks {', '.join(result.tasks)}:\n{table}\n{legend_line}"


MONTE_CARLO = "†"
"""Marks the metrics whose standard errors cover the replicates only (Monte Carlo)."""


def _aggregate_label(metric: Metric) -> str:
    """The metric's label, with ``MONTE_CARLO`` where its CIs are Monte Carlo only."""
    only = metric.uncertainty == "replicates"
    return f"{metric.label} {MONTE_CARLO}" if only else metric.label


def aggregate_legend(result: Aggregate) -> str:
    """What the aggregate's cells, its uncertainty and its marks mean, the test behind
    the marks over the tasks among them."""
    level = f"{1 - result.alpha:.0%}"
    never = [*result.references, REFERENCE_ROW, HUMAN_ROW]
    if len(result.tasks) < MIN_TASKS:
        marks = (
            f"no mark: with fewer than {MIN_TASKS} tasks the variation of a difference "
            "between tasks cannot be estimated, so no model can be separated over them"
        )
    else:
        marks = (
            f"bold where {TEST}, a {level} interval, lies wholly on one side of 0 "
            "against every other simulator, italic for the lowest mean score and those "
            f"not separated from it; none where a difference is defined on fewer than "
            f"{MIN_TASKS} tasks"
        )
    return (
        f"Across the tasks {', '.join(result.tasks)}. Each task's cell: the value and "
        f"its {level} CI, marked as that task's leaderboard marks it (bold: best, "
        "distinguishable from every other simulator by a paired-difference CI; italic: "
        f"tied for best). {ACROSS}: the mean of the tasks' values where the metric is "
        "defined (tasks: how many), its CI the mean ± the normal quantile times "
        "sqrt(sum of the tasks' squared standard errors) / tasks: the sampling error "
        "of the mean over these tasks, not how it would change on other tasks. Marks "
        f"over the tasks: {marks}. {MONTE_CARLO} CIs cover "
        f"{SAMPLING_ERROR['replicates']}: the spread over the simulator's replicate "
        "samples, without the humans' sampling error that every replicate shares, so "
        "narrower than the metric's full uncertainty; the other metrics' CIs resample "
        "the humans and the replicates. wins: tasks where the simulator is best. "
        f"Never marked: {', '.join(never)}."
    )
