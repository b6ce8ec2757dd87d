"""Simulators that need no language model: a resampling reference, a floor, a wrapper.

``BootstrapSimulator`` is a resampling reference: it answers with the humans' own
recorded answers, so its replicates are centred on the human data and look closer
to it than any independent sample could. ``MarginalSimulator`` ignores who the
respondent is (each item drawn from its marginal distribution), the floor that a
simulator which has learnt nothing about personas reaches; ``FunctionSimulator``
wraps a user's own function. The calibrated perfect-simulator reference is no
simulator: ``validate.fresh_reference`` resamples whole humans, persona and answers
together, and every validation runs it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from simval.errors import DataError
from simval.simulators.base import Seed
from simval.study import Item


def _human_columns(
    human: pd.DataFrame, items: Sequence[Item], *, who: str
) -> list[str]:
    """The item names, checked to be columns of the human data."""
    names = [item.name for item in items]
    missing = [n for n in names if n not in human.columns]
    if missing:
        raise DataError(
            f"{who}: the human data has no column for item(s): {', '.join(missing)}"
        )
    return names


def _check_human(human: pd.DataFrame, *, who: str) -> None:
    """The human data must be a non-empty frame with a unique index."""
    if not isinstance(human, pd.DataFrame) or human.empty:
        raise DataError(f"{who}: the human data is empty")
    if not human.index.is_unique:
        dup = human.index[human.index.duplicated()][0]
        raise DataError(
            f"{who}: the human data's index is not unique (label {dup!r} repeats)"
        )


class BootstrapSimulator:
    """A resampling reference: a known human answers as recorded, anyone else as a random peer.

    A persona whose index label is in the human data gets that human's recorded
    answers. Any other persona gets the answers of a human drawn at random from its
    stratum (the humans sharing its values on the ``strata`` columns), or from all
    humans when no strata are given.

    It is not the perfect simulator. A replicate of resampled personas is a
    bootstrap sample of the humans, so it is centred on the human data: the
    difference between its estimates and the humans' has about half the variance
    that an independent sample would give (difference CIs cover 0 far more often
    than 1 - alpha), and since a bootstrap sample holds only ~63% distinct people
    it shows ~27-37% fewer distinct answer patterns than the humans. The calibrated
    reference is ``validate.fresh_reference``, which every validation runs.
    """

    def __init__(
        self, human_df: pd.DataFrame, *, strata: Sequence[str] | None = None
    ) -> None:
        _check_human(human_df, who="BootstrapSimulator")
        self.strata = tuple(strata or ())
        missing = [c for c in self.strata if c not in human_df.columns]
        if missing:
            raise DataError(
                f"BootstrapSimulator: strata column(s) not in the human data: {', '.join(missing)}"
            )
        self.human = human_df

    def __repr__(self) -> str:
        strata = f", strata={list(self.strata)}" if self.strata else ""
        return f"BootstrapSimulator(n={len(self.human)}{strata})"

    def simulate(
        self, personas: pd.DataFrame, items: Sequence[Item], *, seed: Seed = None
    ) -> pd.DataFrame:
        """Recorded answers for known humans, a random stratum peer's answers for the rest."""
        names = _human_columns(self.human, items, who="BootstrapSimulator")
        rng = np.random.default_rng(seed)
        rows = self.human.index.get_indexer(personas.index)
        strangers = rows < 0
        if strangers.any():
            rows[strangers] = self._peer_rows(personas.loc[strangers], rng=rng)
        answers = self.human.iloc[rows][names]
        answers.index = personas.index
        return answers

    def _peer_rows(
        self, strangers: pd.DataFrame, *, rng: np.random.Generator
    ) -> np.ndarray:
        """Positions of random humans from each stranger's stratum."""
        if not self.strata:
            return rng.integers(len(self.human), size=len(strangers))
        missing = [c for c in self.strata if c not in strangers.columns]
        if missing:
            raise DataError(
                f"BootstrapSimulator: the personas lack strata column(s): {', '.join(missing)}"
            )
        pools = self.human.groupby(
            list(self.strata), dropna=False, observed=True
        ).indices
        picked = np.empty(len(strangers), dtype=np.intp)
        keys = strangers[list(self.strata)].itertuples(index=False, name=None)
        for row, key in enumerate(keys):
            pool = pools.get(key if len(key) > 1 else key[0])
            if pool is None:
                where = ", ".join(f"{c}={v!r}" for c, v in zip(self.strata, key))
                raise DataError(f"BootstrapSimulator: no human in the stratum {where}")
            picked[row] = pool[rng.integers(len(pool))]
        return picked


class MarginalSimulator:
    """The floor: each item drawn independently from its marginal distribution in the human data.

    It ignores who the respondent is, so it keeps every item's distribution but none
    of the effects of persona or treatment, nor the links between items.
    """

    def __init__(self, human_df: pd.DataFrame) -> None:
        _check_human(human_df, who="MarginalSimulator")
        self.human = human_df

    def __repr__(self) -> str:
        return f"MarginalSimulator(n={len(self.human)})"

    def simulate(
        self, personas: pd.DataFrame, items: Sequence[Item], *, seed: Seed = None
    ) -> pd.DataFrame:
        """Independent draws from each item's observed (non-missing) answers."""
        names = _human_columns(self.human, items, who="MarginalSimulator")
        rng = np.random.default_rng(seed)
        columns = {}
        for name in names:
            observed = self.human[name].dropna().to_numpy()
            if not len(observed):
                raise DataError(
                    f"MarginalSimulator: item {name!r} has no answers in the human data"
                )
            columns[name] = rng.choice(observed, size=len(personas))
        return pd.DataFrame(columns, index=personas.index)


class FunctionSimulator:
    """Wraps a user function ``fn(personas) -> answers``; ``seed`` is passed if ``fn`` takes one."""

    def __init__(self, fn: Callable[..., pd.DataFrame]) -> None:
        if not callable(fn):
            raise TypeError(
                f"FunctionSimulator needs a callable, got {type(fn).__name__}"
            )
        self.fn = fn
        self._takes_seed = "seed" in inspect.signature(fn).parameters

    def __repr__(self) -> str:
        return f"FunctionSimulator({getattr(self.fn, '__name__', repr(self.fn))})"

    def simulate(
        self, personas: pd.DataFrame, items: Sequence[Item], *, seed: Seed = None
    ) -> pd.DataFrame:
        """Call the wrapped function on the personas (with the seed where it accepts one)."""
        if self._takes_seed:
            return self.fn(personas, seed=seed)
        return self.fn(personas)
