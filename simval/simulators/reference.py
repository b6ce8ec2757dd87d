"""Reference simulators that need no language model: two references, a floor, and a wrapper.

``FreshSampleSimulator`` is the fresh-sample reference: it behaves like a perfect
simulator (one that draws new respondents from the human population) on every
statistic that compares a simulated sample with the human one, so those
statistics have a known, calibrated value to read an LLM against.
``BootstrapSimulator`` is a resampling reference: it answers with the humans' own
recorded answers, so its replicates are centred on the human data and look closer
to it than any independent sample could. ``MarginalSimulator`` ignores who the
respondent is (each item drawn from its marginal distribution), the floor that a
simulator which has learnt nothing about personas reaches; ``FunctionSimulator``
wraps a user's own function.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from simval.errors import DataError
from simval.simulators.base import Seed
from simval.study import Item, check_weights


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
    it shows ~27-37% fewer distinct answer patterns than the humans. Use
    ``FreshSampleSimulator`` for the calibrated reference.
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


_BLOCK_CELLS = 1 << 22  # personas x donors x columns per distance array


def _is_numeric(column: pd.Series) -> bool:
    """True for a column matched by distance (numbers), False for one matched exactly."""
    dtype = column.dtype
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(
        dtype
    )


def _pick_nearest(
    distance: np.ndarray,
    own: np.ndarray,
    *,
    neighbours: int | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Per row, a random column among the ``neighbours`` nearest that is not ``own``; -1 if none.

    ``neighbours=None`` means every allowed column is equally likely. Ties in
    distance are broken at random: with t the k-th smallest distance, the k nearest
    are every column nearer than t plus a random subset of those at t, so a uniform
    pick among them is a column nearer than t with probability (their count) / k,
    and otherwise a uniform pick among the columns at t. This needs a partition,
    not a sort, of each row.
    """
    allowed = (~own).sum(axis=1)
    if neighbours is None:
        pool = ~own
    else:
        distance = np.where(own, np.inf, distance)
        k = np.minimum(neighbours, allowed)
        kth = min(neighbours, distance.shape[1]) - 1
        t = np.partition(distance, kth, axis=1)[:, kth]
        t = np.where(allowed >= neighbours, t, np.inf)[:, None]
        nearer = distance < t
        take_nearer = rng.random(len(distance)) * k < nearer.sum(axis=1)
        pool = np.where(take_nearer[:, None], nearer, (distance == t) & ~own)
    picked = np.where(pool, rng.random(distance.shape), -1.0).argmax(axis=1)
    return np.where(allowed > 0, picked, -1)


class FreshSampleSimulator:
    """The fresh-sample reference: each persona answered by a new respondent like it.

    At construction it draws, once, a pseudo-population: a bootstrap resample (with
    replacement, size n) of the human rows. For each persona it returns the whole
    answer vector of one donor from that pseudo-population (so the links between
    items are kept), never the persona's own answers: the donor has a different
    index label, the same values on every categorical ``match`` column (anything
    not numeric: strings, categories, booleans; NaN is a level of its own), and is
    one of the ``neighbours`` nearest on the numeric ``match`` columns (Euclidean
    distance on columns standardised by the human SD; a component where either
    value is NaN counts as 0), chosen at random, ties at random. Without numeric
    match columns the donor is uniform within the cell. A persona whose cell holds
    no other donor falls back to the cell without the last categorical match column,
    down to none; ``fallbacks`` counts such personas over all calls. With ``weights``
    (a column of survey weights) the pseudo-population is drawn with probability
    proportional to the weights, so it stands for the population the weights describe.

    Why it is calibrated: by the bootstrap principle, an estimate on the
    pseudo-population differs from the human estimate as the human estimate differs
    from the truth. A replicate drawn from the pseudo-population therefore differs
    from the humans by one extra sample's worth of noise, as the sample of an
    independent perfect simulator would: differences of coefficients have variance
    about V_human + V_replicate (a Wald test of equality rejects at about alpha) and
    distances such as the Jensen-Shannon distance show the noise level of two
    independent samples. ``BootstrapSimulator`` instead returns the humans' own
    answers and is centred on the human data.

    Known limits: it reuses human answer vectors, so its count of distinct answer
    patterns sits below the humans' (for patterns and entropy the human value itself
    is the reference); and effects of persona variables that are not in ``match``
    are lost, so match on the treatment columns and on the persona columns the
    study's formulas use.
    """

    def __init__(
        self,
        human_df: pd.DataFrame,
        *,
        match: Sequence[str] = (),
        neighbours: int = 5,
        weights: str | None = None,
        seed: Seed = 0,
    ) -> None:
        who = "FreshSampleSimulator"
        _check_human(human_df, who=who)
        if len(human_df) < 2:
            raise DataError(
                f"{who}: the human data has a single row, so no other respondent can answer for it"
            )
        match = (match,) if isinstance(match, str) else tuple(match)
        missing = [c for c in match if c not in human_df.columns]
        if missing:
            raise DataError(
                f"{who}: match column(s) not in the human data: {', '.join(map(str, missing))}"
            )
        if (
            isinstance(neighbours, bool)
            or not isinstance(neighbours, int | np.integer)
            or neighbours < 1
        ):
            raise DataError(
                f"{who}: neighbours={neighbours!r}; it must be a whole number of at least 1"
            )
        self.human = human_df
        self.match = match
        self.neighbours = int(neighbours)
        self.categorical = tuple(c for c in match if not _is_numeric(human_df[c]))
        self.numeric = tuple(c for c in match if _is_numeric(human_df[c]))
        sd = human_df[list(self.numeric)].std().to_numpy(dtype=float)
        self._scale = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
        if weights is not None:
            if weights not in human_df.columns:
                raise DataError(
                    f"{who}: weights column {weights!r} is not in the human data"
                )
            check_weights(human_df[weights], column=weights, what=who)
        self._origin = self._draw_origin(
            len(human_df),
            rng=np.random.default_rng(seed),
            weights=None if weights is None else human_df[weights].to_numpy(float),
        )
        self.population = human_df.iloc[self._origin]
        self.fallbacks = 0

    @staticmethod
    def _draw_origin(
        n: int, *, rng: np.random.Generator, weights: np.ndarray | None
    ) -> np.ndarray:
        """Positions of a bootstrap resample holding at least two distinct people, each
        drawn with probability proportional to its weight (uniform without).

        A resample of one person repeated (likely only for n = 2 or 3) would leave
        that person without a donor, so it is drawn again.
        """
        p = None if weights is None else weights / weights.sum()
        while True:
            origin = (
                rng.choice(n, size=n, p=p) if p is not None else rng.integers(n, size=n)
            )
            if (origin != origin[0]).any():
                return origin

    def __repr__(self) -> str:
        match = f", match={list(self.match)}" if self.match else ""
        return f"FreshSampleSimulator(n={len(self.human)}{match})"

    def simulate(
        self, personas: pd.DataFrame, items: Sequence[Item], *, seed: Seed = None
    ) -> pd.DataFrame:
        """The answers of a matched donor from the pseudo-population, for every persona."""
        who = "FreshSampleSimulator"
        names = _human_columns(self.human, items, who=who)
        missing = [c for c in self.match if c not in personas.columns]
        if missing:
            raise DataError(
                f"{who}: the personas lack match column(s): {', '.join(map(str, missing))}"
            )
        rng = np.random.default_rng(seed)
        donors = self._donor_rows(personas, rng=rng)
        answers = self.population.iloc[donors][names]
        answers.index = personas.index
        return answers

    def _donor_rows(
        self, personas: pd.DataFrame, *, rng: np.random.Generator
    ) -> np.ndarray:
        """Positions in the pseudo-population of one donor per persona, with fallbacks."""
        n_personas = len(personas)
        codes = self._cell_codes(personas)
        persona_values, donor_values = self._scaled_values(personas)
        persona_origin = self.human.index.get_indexer(personas.index)
        donors = np.full(n_personas, -1, dtype=np.intp)
        for depth in range(len(self.categorical), -1, -1):
            pending = np.flatnonzero(donors < 0)
            if not len(pending):
                break
            if depth == len(self.categorical) - 1:
                self.fallbacks += len(pending)
            persona_cells = codes[pending, :depth]
            donor_cells = codes[n_personas:, :depth]
            for members, pool in self._cells(persona_cells, donor_cells):
                if not len(pool):
                    continue
                # Blocks of personas keep the personas x donors x columns array small.
                block = max(1, _BLOCK_CELLS // (len(pool) * max(1, len(self.numeric))))
                for start in range(0, len(members), block):
                    rows = pending[members[start : start + block]]
                    picked = _pick_nearest(
                        self._distances(persona_values[rows], donor_values[pool]),
                        persona_origin[rows, None] == self._origin[None, pool],
                        neighbours=self.neighbours if self.numeric else None,
                        rng=rng,
                    )
                    found = picked >= 0
                    donors[rows[found]] = pool[picked[found]]
        return donors

    def _cell_codes(self, personas: pd.DataFrame) -> np.ndarray:
        """Integer codes of the categorical match columns: personas first, then the pseudo-population.

        Both sides are coded together, so equal values get equal codes; NaN is code -1,
        a level of its own.
        """
        columns = [
            pd.factorize(
                pd.concat([personas[c], self.population[c]], ignore_index=True).astype(
                    object
                )
            )[0]
            for c in self.categorical
        ]
        return (
            np.column_stack(columns)
            if columns
            else np.empty((len(personas) + len(self.population), 0), dtype=np.intp)
        )

    def _scaled_values(self, personas: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The numeric match columns of personas and pseudo-population, divided by the human SD."""
        columns = list(self.numeric)
        try:
            persona_values = personas[columns].to_numpy(dtype=float, na_value=np.nan)
        except (TypeError, ValueError):
            bad = [c for c in columns if not _is_numeric(personas[c])]
            raise DataError(
                "FreshSampleSimulator: match column(s) numeric in the human data but not "
                f"in the personas: {', '.join(map(str, bad or columns))}"
            ) from None
        donor_values = self.population[columns].to_numpy(dtype=float, na_value=np.nan)
        return persona_values / self._scale, donor_values / self._scale

    @staticmethod
    def _cells(
        persona_cells: np.ndarray, donor_cells: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(persona positions, donor positions) per cell holding personas; pools may be empty."""
        n_personas = len(persona_cells)
        if not persona_cells.shape[1]:
            return [(np.arange(n_personas), np.arange(len(donor_cells)))]
        frame = pd.DataFrame(np.vstack([persona_cells, donor_cells]))
        cells = []
        for positions in frame.groupby(
            list(frame.columns), sort=False
        ).indices.values():
            members = positions[positions < n_personas]
            if len(members):
                cells.append((members, positions[positions >= n_personas] - n_personas))
        return cells

    @staticmethod
    def _distances(persona_values: np.ndarray, donor_values: np.ndarray) -> np.ndarray:
        """Euclidean distances (personas x donors); a component with a NaN counts as 0."""
        if not persona_values.shape[1]:
            return np.zeros((len(persona_values), len(donor_values)))
        if persona_values.shape[1] <= 2:
            # column by column, without the 3-d array (several times faster); a sum of
            # at most two terms does not depend on its order, so this equals nansum's
            squares = [
                np.square(p[:, None] - d[None, :])
                for p, d in zip(persona_values.T, donor_values.T)
            ]
            return np.sqrt(sum(np.where(np.isnan(q), 0.0, q) for q in squares))
        gaps = persona_values[:, None, :] - donor_values[None, :, :]
        return np.sqrt(np.nansum(gaps**2, axis=2))


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
