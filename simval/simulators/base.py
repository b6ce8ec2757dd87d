"""The Simulator protocol and the check every simulator's output must pass.

A simulator turns personas (one row per respondent) into answers (one column per
item, values among the item's option codes). ``validate`` only talks to this
protocol, so any object with a matching ``simulate`` method can be compared with
the humans.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from simval.errors import SimulatorError, plain
from simval.study import Item, invalid_codes_message

Seed = int | np.random.Generator | None


@runtime_checkable
class Simulator(Protocol):
    """Anything that answers items for personas: same index as ``personas``, a column per item."""

    def simulate(
        self, personas: pd.DataFrame, items: Sequence[Item], *, seed: Seed = None
    ) -> pd.DataFrame: ...


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
