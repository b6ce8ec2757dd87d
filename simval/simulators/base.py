"""The simulator contract: the protocols callers read, and the check every output must pass.

A simulator turns personas (one row per respondent) into answers (one column per
item, values among the item's option codes). ``Simulator`` (``simulate``) is all
``validate`` needs, so any object with a matching ``simulate`` method can be compared
with the humans. A simulator may offer more, and callers read it only through the
protocols below (``isinstance`` checks, all ``runtime_checkable``): ``StudySimulator``
(the study it was built for), ``ScoringSimulator`` (option probabilities),
``ModalSimulator`` (score or generate), ``TrainedSimulator`` (the respondents it was
fine-tuned on), ``ParsingSimulator`` (answers it could not read). ``LLMSimulator``
is all of them, the contract of ``HFSimulator`` and ``ServedSimulator``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from simval.errors import SimulatorError, plain
from simval.study import Item, Study, invalid_codes_message

Seed = int | np.random.Generator | None


@runtime_checkable
class Simulator(Protocol):
    """Anything that answers items for personas: same index as ``personas``, a column per item."""

    def simulate(
        self, personas: pd.DataFrame, items: Sequence[Item], *, seed: Seed = None
    ) -> pd.DataFrame: ...


@runtime_checkable
class StudySimulator(Simulator, Protocol):
    """A simulator built for one study (its prompts render that study's items):
    ``validate`` and ``rectify`` infer a formula's items from ``study``."""

    study: Study


@runtime_checkable
class ScoringSimulator(Simulator, Protocol):
    """A simulator that gives each option's probability: ``predict_proba(personas,
    item)``, a row per persona and a column per option code, rows summing to 1.
    ``rectify`` predicts from these, and ``bench`` scores every item once before the
    replicates, unless the simulator generates its answers (``answers_by_scoring``)."""

    def predict_proba(
        self, personas: pd.DataFrame, item: Item | str
    ) -> pd.DataFrame: ...


@runtime_checkable
class ModalSimulator(Simulator, Protocol):
    """A simulator that answers in a ``mode``: ``"score"`` samples answers from the
    option probabilities, ``"generate"`` parses them from sampled text."""

    mode: str


@runtime_checkable
class TrainedSimulator(Simulator, Protocol):
    """A simulator fine-tuned on some respondents: ``training_index``, their index
    labels (empty when it was not), which ``validate`` refuses to evaluate on."""

    training_index: tuple[Any, ...]


@runtime_checkable
class ParsingSimulator(Simulator, Protocol):
    """A simulator that reads answers out of text: ``unparseable``, its running count
    per item name of answers it could not read (left missing, never guessed), which a
    validation reports for its own replicates."""

    unparseable: Counter[str]


@runtime_checkable
class LLMSimulator(
    StudySimulator,
    ScoringSimulator,
    ModalSimulator,
    TrainedSimulator,
    ParsingSimulator,
    Protocol,
):
    """A language-model simulator (``HFSimulator``, ``ServedSimulator``): all of the
    above, plus ``label`` (the model and adapter as the user named them, as progress
    bars show it), ``fingerprint`` (what its cached results depend on, never a path or
    an address) and ``prompt(persona, item)`` (the exact text the model reads)."""

    label: str
    fingerprint: str

    def prompt(self, persona_row: pd.Series | dict, item: Item | str) -> str: ...


def answers_by_scoring(simulator: object) -> bool:
    """Whether ``simulator`` answers from its option probabilities: it has
    ``predict_proba`` and is not in generate mode (one without a mode scores)."""
    if not isinstance(simulator, ScoringSimulator):
        return False
    return not isinstance(simulator, ModalSimulator) or simulator.mode == "score"


def check_output(
    output: object, *, personas: pd.DataFrame, items: Sequence[Item], simulator: object
) -> pd.DataFrame:
    """Return ``output`` with its columns in item order, or raise SimulatorError saying what is wrong.

    Missing answers (NaN) are allowed: a simulator may fail to answer; answers that
    are not among an item's option codes are not.
    """
    who = type(simulator).__name__
    if not isinstance(output, pd.DataFrame):
        raise SimulatorError(
            f"{who}.simulate returned {type(output).__name__}, not a DataFrame"
        )
    if len(output) != len(personas):
        raise SimulatorError(
            f"{who}.simulate returned {len(output)} rows for {len(personas)} personas"
        )
    mismatch = np.flatnonzero(output.index.to_numpy() != personas.index.to_numpy())
    if len(mismatch):
        at = mismatch[0]
        raise SimulatorError(
            f"{who}.simulate returned an index that differs from the personas' index "
            f"(first at row {at}: got {plain(output.index[at])}, expected {plain(personas.index[at])})"
        )
    names = [item.name for item in items]
    missing = [n for n in names if n not in output.columns]
    if missing:
        raise SimulatorError(
            f"{who}.simulate returned no column for item(s): {', '.join(missing)}"
        )
    extra = [str(c) for c in output.columns if c not in names]
    if extra:
        raise SimulatorError(
            f"{who}.simulate returned column(s) that are not simulated items: {', '.join(extra)}"
        )
    for item in items:
        message = invalid_codes_message(output[item.name], item, what=f"{who}.simulate")
        if message:
            raise SimulatorError(message)
    return output[names]
