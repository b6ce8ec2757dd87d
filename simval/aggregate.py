"""Benchmarks across tasks: each simulator's headline metrics per task and over the tasks.

A task's leaderboard judges simulators on one set of respondents; ``aggregate`` puts
several tasks' leaderboards side by side and summarises each metric over them: the
mean of the tasks' values, with a standard error combined from the tasks' own (the
tasks are different respondents, so independent), how many tasks it is taken over and
how many tasks a simulator wins. A simulator is marked best over the tasks only where a
t interval over the tasks' paired score differences with every other (T − 1 degrees of
freedom) excludes 0: the tasks' own spread measures both their sampling error and how
much a difference changes from task to task, which the tasks' own standard errors
miss. With fewer than ``MIN_TASKS`` tasks nothing is marked. Nothing here runs a
simulator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.stats

from simval.errors import DataError, OptionError, check_alpha
from simval.headline import HEADLINE, Metric
from simval.results import (
    HUMAN_ROW,
    REFERENCE_ROW,
    Validation,
    best_marks,
    check_references,
    leader,
    rank,
    score,
    standard_error,
    summary_table,
)

ACROSS = "mean over tasks"
"""The ``task`` of ``Aggregate.table``'s rows that summarise every task."""

MIN_TASKS = 3
"""Tasks a paired difference must be defined on before the marks over tasks test it: a t
interval from 2 tasks has 1 degree of freedom (quantile 12.7 at 95%) and rests on a
single between-task deviation, so with fewer than 3 nothing is marked."""

TEST = (
    "a t interval over the tasks' paired score differences (T - 1 degrees of freedom, "
    "T the tasks where both are defined)"
)
"""The test behind the marks over tasks, in words (the leaderboard's legend shows it)."""

SAMPLING_ERROR = {
    "bootstrap": "humans and replicates",
    "replicates": "replicates only (Monte Carlo)",
}
"""What a simulator row's standard error covers, per ``Metric.uncertainty``: the
bootstrap resamples the humans and the replicates' rows; a replicate metric's SE is the
spread over the replicates, without the humans' sampling error that they all share."""

TABLE_COLUMNS = (
    "simulator", "metric", "task", "value", "std_error", "ci_low", "ci_high",
    "sampling_error", "n_tasks", "wins", "mark",
)  # fmt: skip
DIFFERENCE_COLUMNS = (
    "metric", "simulator", "best", "difference", "std_error", "ci_low", "ci_high",
    "df", "n_tasks",
)  # fmt: skip


@dataclass(frozen=True)
class Aggregate:
    """Simulators benchmarked on several tasks: each task's values and their summary.

    - ``table``: a row per simulator (every leaderboard row: the simulators, the
      ``references``, ``fresh reference`` and ``human``), headline metric and task,
      then one with ``task`` == ``ACROSS``. Columns: simulator, metric, task, value,
      std_error (a task's: the SD of its bootstrap draws, or SD / sqrt(reps) over its
      replicates, ``simval.results.standard_error``; across tasks: sqrt(sum of the
      tasks' squared SEs) / n_tasks, the sampling error of the mean over these very
      tasks), ci_low, ci_high (a task's own CI; across tasks value ± the normal
      quantile times std_error, within the metric's bounds), sampling_error (what
      std_error covers: "humans and replicates" for bootstrapped metrics, "humans" for
      the humans' own levels, "replicates only (Monte Carlo)" for sign-F1,
      false-positive rate and coverage, empty without an SE), n_tasks (tasks where the
      value is defined), wins (tasks where the simulator is marked best), mark ("best",
      "tie" or empty: ``rank`` on a task; across tasks, as ``differences`` decides).
    - ``differences``: per metric, each simulator against the one with the lowest mean
      score (``best``, lower is better as ``rank`` scores): the mean over tasks of
      their paired score differences, its std_error (the differences' SD / sqrt(T)),
      the t interval ci_low, ci_high with df = T − 1 (``TEST``; NaN below
      ``MIN_TASKS``) and n_tasks (T, the tasks where both are defined).
    - ``tasks``: the task names, in order; ``simulators``: the row names, in order;
      ``references``: rows shown and never marked; ``alpha``: the CIs are 1 − alpha.
    """

    table: pd.DataFrame
    differences: pd.DataFrame
    tasks: tuple[str, ...]
    simulators: tuple[str, ...]
    references: tuple[str, ...]
    alpha: float


def aggregate(
    validations: Mapping[str, Mapping[str, Validation]],
    *,
    references: Sequence[str] = (),
) -> Aggregate:
    """Summarise task -> (name -> Validation) over the tasks; ``references`` (e.g. the
    resampling reference) are shown and never marked. Every task must hold the same
    names, validated with the same alpha."""
    tasks, names, alpha = _check(validations, references=references)
    rows = [*names, REFERENCE_ROW, HUMAN_ROW]
    per_task = pd.concat(
        [
            _task_rows(validations[task], task=task, references=references, alpha=alpha)
            for task in tasks
        ],
        ignore_index=True,
    )
    competing = [name for name in names if name not in references]
    differences = pd.DataFrame(
        [
            row
            for metric in HEADLINE
            for row in _differences(validations, competing, metric=metric, alpha=alpha)
        ],
        columns=DIFFERENCE_COLUMNS,
    )
    across = _across_rows(per_task, differences, rows=rows, alpha=alpha)
    table = pd.concat([per_task, across], ignore_index=True)
    return Aggregate(
        table=table[list(TABLE_COLUMNS)], differences=differences, tasks=tasks,
        simulators=tuple(rows), references=tuple(references), alpha=alpha,
    )  # fmt: skip


def _check(
    validations: Mapping[str, Mapping[str, Validation]], *, references: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...], float]:
    """The tasks, the names every task holds (in order) and their shared alpha; a clear error for no task, different names or alphas, unknown
    references."""
    if not isinstance(validations, Mapping) or not validations:
        raise OptionError("aggregate needs a non-empty mapping of task -> validations")
    tasks = tuple(validations)
    first = tasks[0]
    names = tuple(validations[first])
    if not names:
        raise OptionError(f"task {first!r} has no validations")
    for task in tasks:
        if tuple(validations[task]) != names:
            raise DataError(
                f"tasks {first!r} and {task!r} compare different simulators "
                f"({', '.join(names)} vs {', '.join(validations[task])}); benchmark the "
                "same ones on every task"
            )
    alphas = {v.alpha for task in tasks for v in validations[task].values()}
    if len(alphas) > 1:
        raise DataError(
            f"the tasks' validations use different alphas ({sorted(alphas)}); "
            "validate every task with one alpha"
        )
    check_references(references, names=names)
    return tasks, names, alphas.pop()


def _task_rows(
    validations: Mapping[str, Validation],
    *,
    task: str,
    references: Sequence[str],
    alpha: float,
) -> pd.DataFrame:
    """One task's leaderboard, tidy: every row's value, SE, CI and ``rank`` mark."""
    values = summary_table(validations)
    marks = rank(validations, level=1 - alpha, references=references)
    human = next(iter(validations.values()))
    out = []
    for name in values.index:
        for metric in HEADLINE:
            if name in validations:
                source, key = validations[name], metric.name
            elif name == HUMAN_ROW and metric.human:
                source, key = human, metric.human
            else:
                source, key = None, metric.name
            summary = source.summary() if source else {}
            mark = marks.at[name, metric.name] if name in marks.index else ""
            value = float(values.at[name, metric.name])
            covers = ""
            if source is not None:
                covers = (
                    "humans"
                    if name == HUMAN_ROW
                    else SAMPLING_ERROR[metric.uncertainty]
                )
            out.append(
                {
                    "simulator": name,
                    "metric": metric.name,
                    "task": task,
                    "value": value,
                    "std_error": standard_error(source, key) if source else math.nan,
                    "ci_low": summary.get(f"{key}_ci_low", math.nan),
                    "ci_high": summary.get(f"{key}_ci_high", math.nan),
                    "sampling_error": covers,
                    "n_tasks": int(math.isfinite(value)),
                    "wins": int(mark == "best"),
                    "mark": mark,
                }
            )
    return pd.DataFrame(out, columns=TABLE_COLUMNS)


def _differences(
    validations: Mapping[str, Mapping[str, Validation]],
    competing: Sequence[str],
    *,
    metric: Metric,
    alpha: float,
) -> list[dict[str, object]]:
    """Each competing simulator against the lowest mean score on ``metric`` over the
    tasks (``compare_over_tasks`` on the tasks' scores)."""
    scores = pd.DataFrame(
        [
            [_task_score(tasks, name, metric) for name in competing]
            for tasks in validations.values()
        ],
        index=list(validations),
        columns=list(competing),
    )
    return compare_over_tasks(scores, metric=metric.name, alpha=alpha).to_dict(
        "records"
    )


def compare_over_tasks(
    scores: pd.DataFrame, *, metric: str, alpha: float = 0.05
) -> pd.DataFrame:
    """Per simulator (a column of ``scores``, a row per task, lower is better, NaN where
    undefined), its paired score differences with the lowest mean score, summarised over
    the tasks where both are defined by ``TEST``: their mean, SD / sqrt(T) and the t
    (1 − ``alpha``) interval with T − 1 degrees of freedom (NaN below ``MIN_TASKS``
    tasks).

    The tasks are a sample of the tasks one could have run: a difference that is large
    on one task and reversed on another is not shown by a mean that its tasks' own
    standard errors call precise. The per-task differences vary by their sampling error
    (humans' and replicates') and by the task, and their spread measures both.
    """
    check_alpha(alpha)
    best = leader({name: _mean(scores[name].tolist()) for name in scores.columns})
    if best is None:
        return pd.DataFrame(columns=DIFFERENCE_COLUMNS)
    rows = []
    for name in scores.columns:
        if name == best or not np.isfinite(scores[name]).any():
            continue
        paired = (scores[name] - scores[best]).to_numpy(dtype=float)
        paired = paired[np.isfinite(paired)]
        mean, se, low, high = _t_interval(paired, alpha=alpha)
        rows.append(
            {
                "metric": metric, "simulator": name, "best": best,
                "difference": mean, "std_error": se, "ci_low": low, "ci_high": high,
                "df": len(paired) - 1, "n_tasks": len(paired),
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS)


def _t_interval(
    values: np.ndarray, *, alpha: float
) -> tuple[float, float, float, float]:
    """Mean, SE (SD / sqrt(n)) and the (1 − alpha) t interval, n − 1 degrees of freedom; the
    interval is NaN below ``MIN_TASKS`` values, the mean NaN for none."""
    if len(values) == 0:
        return math.nan, math.nan, math.nan, math.nan
    mean = float(values.mean())
    se = (
        float(values.std(ddof=1) / math.sqrt(len(values)))
        if len(values) > 1
        else math.nan
    )
    if len(values) < MIN_TASKS:
        return mean, se, math.nan, math.nan
    half = float(scipy.stats.t.ppf(1 - alpha / 2, len(values) - 1)) * se
    return mean, se, mean - half, mean + half


def _task_score(
    validations: Mapping[str, Validation], name: str, metric: Metric
) -> float:
    """One task's score of ``name`` on ``metric`` (lower is better), as ``rank`` scores."""
    summary = validations[name].summary()
    target = summary[metric.human] if metric.human else 1 - validations[name].alpha
    return float(score(summary[metric.name], direction=metric.direction, target=target))


def _across_rows(
    per_task: pd.DataFrame,
    differences: pd.DataFrame,
    *,
    rows: Sequence[str],
    alpha: float,
) -> pd.DataFrame:
    """Per row and metric, the mean of the tasks' values with its combined SE and CI
    (the sampling error of the mean over these tasks; what it covers), the tasks it is
    over, the tasks won and the across-task mark."""
    z = scipy.stats.norm.ppf(1 - alpha / 2)
    marks = across_marks(differences)
    out = []
    for name in rows:
        for metric in HEADLINE:
            cells = per_task[
                (per_task["simulator"] == name) & (per_task["metric"] == metric.name)
            ]
            defined = cells[np.isfinite(cells["value"])]
            mean, se = _combined(list(zip(defined["value"], defined["std_error"])))
            low, high = np.clip([mean - z * se, mean + z * se], *metric.bounds)
            covers = set(cells["sampling_error"]) - {""}
            out.append(
                {
                    "simulator": name, "metric": metric.name, "task": ACROSS,
                    "value": mean, "std_error": se, "ci_low": float(low),
                    "ci_high": float(high),
                    "sampling_error": covers.pop() if len(covers) == 1 else "",
                    "n_tasks": len(defined),
                    "wins": int(cells["wins"].sum()),
                    "mark": marks.get((name, metric.name), ""),
                }
            )  # fmt: skip
    return pd.DataFrame(out, columns=TABLE_COLUMNS)


def across_marks(differences: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(name, metric) -> "best" or "tie", from each metric's differences with its
    lowest mean score (``compare_over_tasks``, ``simval.results.best_marks``); a metric
    with a difference over fewer than ``MIN_TASKS`` tasks gets no mark at all."""
    marks = {}
    for metric, rows in differences.groupby("metric", sort=False):
        if (rows["n_tasks"] < MIN_TASKS).any():
            continue
        found = {
            row.simulator: (row.difference, row.ci_low, row.ci_high)
            for row in rows.itertuples(index=False)
        }
        best = rows["best"].iloc[0]
        for name, mark in best_marks(best, found).items():
            marks[name, metric] = mark
    return marks


def _combined(found: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The mean of independent estimates (value, SE) and its SE, sqrt(sum SE²) / n;
    NaN for none, and a NaN SE where any estimate has none."""
    if not found:
        return math.nan, math.nan
    values, errors = np.array(found, dtype=float).T
    return float(values.mean()), float(np.sqrt(np.sum(errors**2)) / len(values))


def _mean(values: Sequence[float]) -> float:
    """The mean of the finite values; NaN for none."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan
