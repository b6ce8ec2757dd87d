"""The leaderboard: simulators side by side, the best value in each column marked.

"Best" depends on the column (``DIRECTIONS``): lowest for distances and error
rates, highest for sign-F1, closest to 1 for the variance ratio, closest to the
humans for the levels they show themselves, closest to nominal for coverage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from simval.errors import DataError, OptionError
from simval.report.blocks import Cell, Table, cell

HUMAN = "human"
"""The leaderboard row holding the humans' own levels (patterns, entropy, incoherence)."""

LOWEST = "lowest"
HIGHEST = "highest"
NEAR_ONE = "closest to 1 (log scale)"
NEAR_HUMAN = "closest to the human row"
NEAR_NOMINAL = "closest to nominal coverage"

DIRECTIONS: dict[str, str] = {
    "jsd": LOWEST,
    "subgroup_jsd_gap": LOWEST,
    "variance_ratio": NEAR_ONE,
    "unique_patterns": NEAR_HUMAN,
    "entropy": NEAR_HUMAN,
    "incoherence": NEAR_HUMAN,
    "sign_f1": HIGHEST,
    "false_positive_rate": LOWEST,
    "coverage": NEAR_NOMINAL,
}
"""What "best" means in each leaderboard column (the columns of ``simval.validate.compare``).

jsd, subgroup_jsd_gap, false_positive_rate: lowest. sign_f1: highest. variance_ratio:
smallest |log ratio| (a ratio of 1/2 is as far off as 2). unique_patterns, entropy,
incoherence: smallest distance to the ``human`` row (more is not better: the humans
are the target). coverage: smallest distance to the nominal level.
"""

LABELS: dict[str, str] = {
    "jsd": "JSD",
    "subgroup_jsd_gap": "subgroup JSD gap",
    "variance_ratio": "variance ratio",
    "unique_patterns": "distinct patterns",
    "entropy": "pattern entropy",
    "incoherence": "incoherence",
    "sign_f1": "sign-F1",
    "false_positive_rate": "false-positive rate",
    "coverage": "coverage",
}
"""Display headers of the leaderboard columns (files keep the snake_case names)."""

TIE_TOLERANCE = 1e-9
"""Scores within this (relative and absolute) distance of the best count as tied."""


def mark_best(
    table: pd.DataFrame,
    *,
    nominal_coverage: float = 0.95,
    exclude: Sequence[str] = (HUMAN,),
) -> pd.DataFrame:
    """Boolean frame (same index/columns as ``table``) True where a row is best in its column.

    Only rows not named in ``exclude`` compete; ties are all marked, NaN is never
    best. Columns judged against the humans need a ``human`` row; without one (or
    where it is NaN) nothing is marked in them.
    """
    _check_table(table)
    if not 0 < nominal_coverage < 1:
        raise OptionError(
            f"nominal_coverage={nominal_coverage!r} must lie strictly between 0 and 1"
        )
    values = table.apply(pd.to_numeric, errors="coerce").astype(float)
    competing = ~table.index.isin(list(exclude))
    marks = pd.DataFrame(False, index=table.index, columns=table.columns)
    for column in table.columns:
        score = _score(
            values[column],
            direction=DIRECTIONS[column],
            target=_target(values, column, nominal_coverage=nominal_coverage),
        )
        score = score.where(competing & np.isfinite(score))
        if score.notna().any():
            best = score.min()
            marks[column] = np.isclose(
                score, best, rtol=TIE_TOLERANCE, atol=TIE_TOLERANCE
            )
    return marks


def leaderboard_table(table: pd.DataFrame, marks: pd.DataFrame) -> Table:
    """The leaderboard as a display table, best cells marked."""
    columns = ("simulator", *(LABELS[c] for c in table.columns))
    rows = tuple(
        (
            Cell(str(name)),
            *(
                cell(_float(table.at[name, c]), best=bool(marks.at[name, c]))
                for c in table.columns
            ),
        )
        for name in table.index
    )
    return Table(columns=columns, rows=rows)


def legend(
    table: pd.DataFrame, *, nominal_coverage: float, exclude: Sequence[str]
) -> str:
    """One line saying what the bold marks mean, column by column."""
    by_direction: dict[str, list[str]] = {}
    for column in table.columns:
        by_direction.setdefault(DIRECTIONS[column], []).append(LABELS[column])
    parts = [
        f"{', '.join(labels)}: "
        + (
            f"closest to {nominal_coverage:g}"
            if direction == NEAR_NOMINAL
            else direction
        )
        for direction, labels in by_direction.items()
    ]
    skipped = [str(name) for name in exclude if name in table.index]
    tail = f" Rows never marked: {', '.join(skipped)}." if skipped else ""
    return "Bold: the best value in its column. " + "; ".join(parts) + "." + tail


def write_leaderboard(
    table: pd.DataFrame,
    out_dir: str | Path,
    *,
    stem: str = "leaderboard",
    nominal_coverage: float = 0.95,
    exclude: Sequence[str] = (HUMAN,),
) -> tuple[Path, Path, Path]:
    """CSV, Markdown and HTML of the leaderboard with the best value per column marked.

    The CSV holds the numbers at full precision plus ``best_in``, the ";"-joined
    columns where that row is best. Returns the (csv, md, html) paths.
    """
    from simval.report.render import render_leaderboard

    marks = mark_best(table, nominal_coverage=nominal_coverage, exclude=exclude)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = tuple(folder / f"{stem}.{suffix}" for suffix in ("csv", "md", "html"))
    frame = table.copy()
    frame["best_in"] = [
        ";".join(c for c in table.columns if marks.at[name, c]) for name in table.index
    ]
    frame.index.name = table.index.name or "simulator"
    frame.to_csv(paths[0])
    text = legend(table, nominal_coverage=nominal_coverage, exclude=exclude)
    shown = leaderboard_table(table, marks)
    paths[1].write_text(
        render_leaderboard(shown, legend=text, fmt="md"), encoding="utf-8"
    )
    paths[2].write_text(
        render_leaderboard(shown, legend=text, fmt="html"), encoding="utf-8"
    )
    return paths


def _check_table(table: pd.DataFrame) -> None:
    """A leaderboard is a DataFrame of known, numeric columns with unique row names."""
    if not isinstance(table, pd.DataFrame):
        raise DataError(
            f"the leaderboard must be a pandas DataFrame, got {type(table).__name__}"
        )
    unknown = [str(c) for c in table.columns if c not in DIRECTIONS]
    if unknown:
        raise OptionError(
            f"unknown leaderboard column(s): {', '.join(unknown)}; "
            f"known: {', '.join(DIRECTIONS)}"
        )
    if not table.index.is_unique:
        dup = table.index[table.index.duplicated()][0]
        raise DataError(f"the leaderboard has two rows named {dup!r}")
    for column in table.columns:
        values = table[column]
        numeric = pd.to_numeric(values, errors="coerce")
        if (numeric.isna() & values.notna()).any():
            raise DataError(f"leaderboard column {column!r} holds non-numeric values")


def _target(values: pd.DataFrame, column: str, *, nominal_coverage: float) -> float:
    """The value a column aims at: the human row's, the nominal coverage, 1, or none."""
    direction = DIRECTIONS[column]
    if direction == NEAR_HUMAN:
        return float(values.at[HUMAN, column]) if HUMAN in values.index else math.nan
    if direction == NEAR_NOMINAL:
        return nominal_coverage
    return math.nan


def _score(values: pd.Series, *, direction: str, target: float) -> pd.Series:
    """Lower is better: the value itself, its negative, or its distance to the target."""
    if direction == LOWEST:
        return values
    if direction == HIGHEST:
        return -values
    if direction == NEAR_ONE:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(np.log(values.where(values > 0)))
    return (values - target).abs()


def _float(value: object) -> float:
    """A table value as a float, NaN for missing."""
    return math.nan if pd.isna(value) else float(value)
