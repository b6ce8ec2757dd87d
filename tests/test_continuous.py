"""Number answers: formula mode compares a simulator's new values instead of refusing
them, and the bootstrap codes a continuous item by its samples' own levels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simval import FunctionSimulator, Item, SimulatorError, Study, validate
from simval.metrics import NumberScale
from simval.resampling import code_samples, headline_draws, headline_values
from simval.simulators.base import check_output
from simval.study import Number, formula_study


def _scale(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 0-10 rating whose 3 is rare (about 0.3% of answers)."""
    return rng.binomial(10, 1 / (1 + np.exp(-1.5 - 0.5 * x))).astype(float)


def _count(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A Poisson count with mean exp(0.3 + 0.4 x)."""
    return rng.poisson(np.exp(0.3 + 0.4 * x)).astype(float)


def _continuous(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return 1 + 0.5 * x + rng.normal(size=len(x))


PROCESSES = {
    "scale without a 3 (ols)": (_scale, "ols", 0),
    "count (poisson)": (_count, "poisson", 0),
    "count (ols)": (_count, "ols", 0),
    "continuous (ols)": (_continuous, "ols", 0),
}


@pytest.mark.parametrize("name", PROCESSES)
def test_a_perfect_simulator_giving_new_numbers_is_compared_not_refused(name):
    """Formula mode: a simulator drawing from the humans' own process gives values no
    human gave (a 3 on the 0-10 scale, a count above the humans' largest, new
    continuous values); they are answers, compared like the rest (none counted
    missing), and a simulator off by a shift stays far worse than it."""
    process, family, seed = PROCESSES[name]
    rng = np.random.default_rng(seed)
    x = rng.normal(size=300)
    human = pd.DataFrame({"y": process(x, rng), "x": x})
    if process is _scale:
        assert 3 not in set(human["y"])  # the humans never answered 3
    seen = set(human["y"])
    given: list[np.ndarray] = []

    def truth(people, seed, shift=0.0):
        y = process(people["x"].to_numpy(), np.random.default_rng(seed)) + shift
        given.append(y)
        return pd.DataFrame({"y": y}, index=people.index)

    options = {"family": family, "reps": 10, "resamples": 50, "seed": 1}
    perfect = validate("y ~ x", human, FunctionSimulator(truth), **options)
    new = {v for y in given for v in y} - seen
    assert new, "the true process gave no value the humans did not"
    (item,) = perfect.study.items
    assert item.is_number and item.options == {}
    assert item.number.whole == (process is not _continuous)
    row = perfect.distributions.query("subgroup == 'overall'").iloc[0]
    assert row["n_sim"] == len(human)  # every new value counted as an answer
    assert perfect.summary()["nonresponse"] == 0
    assert perfect.verdicts["decision"].iloc[0] != "inconsistent"

    def shifted(people, seed):
        return truth(people, seed, shift=2.0)

    wrong = validate("y ~ x", human, FunctionSimulator(shifted), **options)
    for metric in ("jsd", "wasserstein"):
        assert wrong.summary()[metric] > 2 * perfect.summary()[metric], metric


def test_only_a_linear_or_count_outcome_is_opened():
    """The outcome of an OLS model with more than two values or of a Poisson model is an
    open whole number item; a binary or categorical outcome, a two-valued OLS outcome
    and a column of ``items`` keep the humans' values as options, and a value beyond
    them is refused, naming the item."""
    rng = np.random.default_rng(2)
    human = pd.DataFrame(
        {
            "q": rng.integers(1, 6, 200).astype(float),
            "b": rng.integers(0, 2, 200).astype(float),
            "x": rng.normal(size=200),
        }
    )
    cases = [
        ("q ~ x", "ols", "q", True),
        ("b ~ x", "poisson", "b", True),
        ("q ~ x", "ologit", "q", False),
        ("b ~ x", "logit", "b", False),
        ("b ~ x", "ols", "b", False),
        ("x ~ q", "ols", "q", False),
        ("x ~ C(q)", "ols", "q", False),
    ]
    for formula, family, name, opened in cases:
        study = formula_study(
            formula, human, declared=None, family=family, cov="HC1", items=[name]
        )
        item = study.item(name)
        assert item.is_number == opened, (formula, family)
        if opened:
            assert item.number == Number(whole=True)
            continue
        assert sorted(item.codes) == sorted(set(human[name]))
        answers = pd.DataFrame({i.name: 1.0 for i in study.items}, index=[0])
        answers[name] = 7.0
        with pytest.raises(SimulatorError, match=f"'{name}'.*7"):
            check_output(
                answers, personas=human.iloc[:1], items=study.items, simulator=1
            )


def _coded_study(*, weighted: bool):
    """A study with a continuous, a count and an option item, a subgroup, missing
    answers, and replicates whose number answers the humans never gave."""
    items = (
        Item("y", "y?", number={}),
        Item("k", "k?", number={"min": 0, "whole": True}),
        Item("q", "q?", {"a": 3, "b": 1, "c": 2}),  # codes not in ascending order
    )
    study = Study(items=items, persona=("g",))
    rng = np.random.default_rng(4)

    def sample(n, shift):
        frame = pd.DataFrame(
            {
                "g": rng.choice(["u", "v", "w"], n),
                "y": (rng.normal(shift, 1, n)).round(3),
                "k": rng.poisson(2 + shift, n).astype(float),
                "q": rng.choice([1.0, 2.0, 3.0], n),
            }
        )
        frame.loc[rng.random(n) < 0.1, "y"] = np.nan
        frame.loc[rng.random(n) < 0.05, "q"] = np.nan
        return frame

    human = sample(240, 0.0)
    replicates = [sample(200, shift) for shift in (0.0, 0.3, 1.0)]
    replicates[2]["k"] = np.nan  # one replicate never answers k
    weights = rng.lognormal(sigma=0.5, size=len(human)) if weighted else None
    scales = {
        "y": NumberScale.of(human["y"], low=None, high=None, whole=False),
        "k": NumberScale.of(human["k"], low=0, high=None, whole=True),
    }
    return study, human, replicates, weights, scales


@pytest.mark.parametrize("weighted", [False, True])
def test_a_bootstrap_draw_equals_the_metrics_of_its_rows(weighted):
    """Each sample is counted over its own levels and each replicate's earth mover's
    distance is read on its and the humans' joint levels; a resampled draw (levels
    left out, rows repeated) must give exactly the headline metrics of the resampled
    rows coded afresh, whose identity draw tests/test_validate.py checks against the
    tables."""
    study, human, replicates, weights, scales = _coded_study(weighted=weighted)
    cells = [("g", level) for level in ("u", "v", "w")]
    options = {
        "cells": cells,
        "judged": [True, True, False],
        "pattern_items": ["y", "k", "q"],
        "pairs": [],
        "scales": scales,
    }
    coding = code_samples(study, human, replicates, human_weights=weights, **options)
    rng = np.random.default_rng(5)
    for _ in range(3):
        rows = rng.integers(len(human), size=len(human) // 2)
        rep_rows = [rng.integers(len(r), size=len(r)) for r in replicates]
        (drawn,) = headline_draws(coding, [(rows, rep_rows)])
        afresh = code_samples(
            study,
            human.iloc[rows],
            [r.iloc[picked] for r, picked in zip(replicates, rep_rows)],
            human_weights=None if weights is None else weights[rows],
            **options,
        )
        expected = headline_values(
            afresh, np.arange(len(rows)), [np.arange(len(r)) for r in rep_rows]
        )
        assert drawn.keys() == expected.keys()
        for name, value in expected.items():
            assert drawn[name] == pytest.approx(value, rel=1e-9, nan_ok=True), name


def test_no_resamples_means_no_bootstrap_draws(monkeypatch):
    """With ``resamples=0`` the only counting is of the data as drawn: the humans once
    and each replicate once, for the fresh reference's run (the reference values) and
    for the simulator's (the values and the Monte Carlo standard errors)."""
    from simval import resampling

    counted = []
    original = resampling._summarise_chunk

    def spy(coding, coded, draws):
        counted.append(len(draws))
        return original(coding, coded, draws)

    monkeypatch.setattr(resampling, "_summarise_chunk", spy)
    rng = np.random.default_rng(6)
    x = rng.normal(size=200)
    human = pd.DataFrame({"y": _continuous(x, rng), "x": x})

    def truth(people, seed):
        y = _continuous(people["x"].to_numpy(), np.random.default_rng(seed))
        return pd.DataFrame({"y": y}, index=people.index)

    result = validate("y ~ x", human, FunctionSimulator(truth), reps=4, resamples=0)
    assert np.isnan(result.headline.set_index("metric").loc["jsd", "ci_low"])
    assert counted == [1] * 2 * (1 + 4)
