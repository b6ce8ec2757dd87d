"""The human data bound to the study, checked once before any simulator is asked.

``bind`` resolves the study (declared, or inferred from a formula and the data), checks
the human data against it and fixes what every later step reads: the human answers
with their declared missing codes blank, split into the subgroup cells, the subgroup
levels, the persona columns, the belief items of the answer patterns, the categorical
items, the cluster column, the survey weights, each number item's scale and the notes
about the data. Every table after that reads the ``Binding``, never the raw arguments
again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from simval.errors import DataError, OptionError, StudyError, check_count
from simval.families import CLUSTER_PREFIX
from simval.metrics import NumberScale
from simval.results import OVERALL
from simval.simulators.base import TrainedSimulator
from simval.study import (
    Item,
    Study,
    categorical_items,
    formula_study,
    labelled_outcomes,
    subgroup_levels,
)

MIN_SUBGROUP_N = 30
"""Subgroup cells with fewer human respondents are flagged ``small`` and kept out of the
headline numbers: below about 30 the JSD between two samples of one distribution
exceeds 0.2 for a five-option item, and a cell's regression rests on a handful of rows."""

Group = tuple[str, str]
"""(subgroup, level); ``(OVERALL, OVERALL)`` for all respondents."""
Key = tuple[str, str, str]
"""(formula, subgroup, level)."""
Split = dict[Group, pd.DataFrame]


@dataclass(frozen=True, eq=False)
class Binding:
    """The human data bound to the study: everything a validation reads of the humans,
    resolved and checked before any simulator is asked.

    ``human`` is the human data with the declared missing answers blank
    (``Study.blank_missing``), the frame every later step reads; ``cells`` splits it
    into all respondents and every subgroup level (``split_cells``). Two bindings are
    equal only when they are the same object (they hold frames): bindings of the same
    humans and settings differ only through their ``study``.
    """

    study: Study
    human: pd.DataFrame
    cells: Split
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
    missing_answers: str | None  # Study.missing_answers_note of the data as given
    missing_personas: str | None  # Study.missing_persona_note
    fingerprint: str  # which humans (``fingerprint`` of ``human``)

    @property
    def personas(self) -> pd.DataFrame:
        """The persona columns of the humans: what a simulator is shown."""
        return self.human[list(self.persona_columns)]

    def weights(self, rows: pd.DataFrame) -> np.ndarray | None:
        """The survey weights of human ``rows`` (None when the study has none)."""
        return None if self.weight is None else rows[self.weight].to_numpy(float)


def fingerprint(human_df: pd.DataFrame) -> str:
    """SHA-256 of the human data (index, columns and values as CSV): which humans a
    validation was computed on, so validations of different data are never ranked together."""
    return hashlib.sha256(human_df.to_csv().encode("utf-8")).hexdigest()


# --- binding and input checks --------------------------------------------------------


def bind(
    formula_or_study: str | Study,
    human_df: pd.DataFrame,
    *,
    declared: Study | None = None,
    family: str = "ols",
    cov: str = "HC1",
    subgroups: Sequence[str] | None = None,
    items: Sequence[str] | None = None,
    min_subgroup_n: int = MIN_SUBGROUP_N,
) -> Binding:
    """Resolve the study, check the human data against it, and bind the two.

    With a formula, ``family``, ``cov`` and ``items`` make a one-model study
    (``formula_study``), whose items are ``declared``'s where it names them; with a
    ``Study`` they must be left unset. ``subgroups``: the study's own when None.
    """
    check_count("min_subgroup_n", min_subgroup_n)
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
    levels = {s: subgroup_levels(human_df[s], subgroup=s) for s in subgroups}
    human = study.blank_missing(human_df)
    beliefs = study.items_with_role("belief")
    return Binding(
        study=study,
        human=human,
        cells=_split(human, levels),
        subgroups=subgroups,
        levels=levels,
        persona_columns=persona_columns,
        pattern_items=tuple(i.name for i in beliefs) or study.item_names,
        categorical_items=categorical_items(study),
        labelled_outcomes=labelled_outcomes(study),
        cluster=cluster_column(study, persona_columns),
        min_subgroup_n=min_subgroup_n,
        weight=study.weight,
        scales=number_scales(study, human),
        missing_answers=study.missing_answers_note(human_df),
        missing_personas=study.missing_persona_note(human),
        fingerprint=fingerprint(human),
    )


def cluster_column(study: Study, persona_columns: Sequence[str]) -> str | None:
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
    trained = (
        simulator.training_index if isinstance(simulator, TrainedSimulator) else ()
    )
    seen = human_df.index[human_df.index.isin(list(trained))]
    if len(seen):
        shown = ", ".join(repr(label) for label in seen[:5])
        raise DataError(
            f"{len(seen)} respondent(s) of the human data were in the fine-tuning pilot of "
            f"{simulator!r} (e.g. {shown}); evaluate on held-out respondents only"
        )


# --- splitting into (subgroup, level) groups ---------------------------------------


def split_cells(binding: Binding, df: pd.DataFrame) -> Split:
    """All respondents, then the rows of every level of every subgroup (levels as strings)."""
    return _split(df, binding.levels)


def cell_masks(binding: Binding, df: pd.DataFrame) -> dict[Group, np.ndarray]:
    """Which rows of ``df`` each group holds, in ``split_cells``'s order."""
    return _masks(df, binding.levels)


def _split(df: pd.DataFrame, levels: Mapping[str, tuple[Any, ...]]) -> Split:
    """``split_cells`` by the subgroups' ``levels``."""
    return {
        group: df if group == (OVERALL, OVERALL) else df[mask]
        for group, mask in _masks(df, levels).items()
    }


def _masks(
    df: pd.DataFrame, levels: Mapping[str, tuple[Any, ...]]
) -> dict[Group, np.ndarray]:
    """``cell_masks`` by the subgroups' ``levels``."""
    masks = {(OVERALL, OVERALL): np.ones(len(df), dtype=bool)}
    for subgroup, values in levels.items():
        for level in values:
            masks[subgroup, str(level)] = (df[subgroup] == level).to_numpy(
                dtype=bool, na_value=False
            )
    return masks


def overall_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``table`` that cover all respondents."""
    if table.empty:
        return table
    overall = (table["subgroup"].to_numpy() == OVERALL) & (
        table["level"].to_numpy() == OVERALL
    )
    return table if overall.all() else table[overall]


def overall_only(split: Split) -> Split:
    """The all-respondents group of a split."""
    return {(OVERALL, OVERALL): split[OVERALL, OVERALL]}


def number_scales(study: Study, human_df: pd.DataFrame) -> dict[str, NumberScale]:
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
