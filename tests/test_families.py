"""The family registry (simval.families): one entry per family, read by regression and ppi.

Every entry must name an estimator, link and PPI++ loss that the estimating modules
implement; the derived tuples and the lookup's message stay what users saw before the
registry; a family that reuses an existing estimator is one entry away from being fitted.
"""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from typing import get_args

import numpy as np
import pandas as pd
import pytest

from simval import families, ppi, regression
from simval.errors import DataError, OptionError
from simval.families import REGISTRY, Family, family_of


def test_every_entry_names_what_the_estimating_modules_implement():
    assert tuple(REGISTRY) == get_args(Family) == families.FAMILIES
    for name, family in REGISTRY.items():
        assert family.name == name
        assert family.estimator in regression._ESTIMATORS, name
        assert family.ppi_loss is None or family.ppi_loss in ppi.LOSSES, name
        if family.estimator == "glm":
            assert family.outcome in regression._GLM_DISTRIBUTIONS, name
            assert family.link in regression._LINKS, name
        if family.estimator == "ordered":
            assert family.link in regression._LATENT, name
        assert set(family.weighted_covs) <= set(family.covs), name
        assert family.small_cell is None or family.outcome == "binary", name
    assert set(ppi.LOSSES) == {f.ppi_loss for f in REGISTRY.values()} - {None}


def test_the_derived_tuples_and_the_lookup_message_are_unchanged():
    assert families.PPI_FAMILIES == ("ols", "logit", "probit", "poisson")
    assert families.ORDERED_FAMILIES == ("ologit", "oprobit")
    assert families.CATEGORICAL_FAMILIES == ("mnlogit", "ologit", "oprobit")
    with pytest.raises(OptionError) as info:
        family_of("gaussian")
    assert str(info.value) == (
        "family='gaussian' is not allowed; choose one of 'ols', 'logit', 'probit', "
        "'poisson', 'mnlogit', 'ologit', 'oprobit'"
    )
    with pytest.raises(OptionError, match="^family of model 'y ~ x'='tobit'"):
        family_of("tobit", argument="family of model 'y ~ x'")


def test_latent_scales_small_cells_and_outcome_checks():
    logistic = math.pi / math.sqrt(3)
    scales = {name: f.outcome_scale(outcome_sd=7.0) for name, f in REGISTRY.items()}
    assert scales == pytest.approx(
        {
            "ols": 7.0,
            "logit": logistic,
            "probit": 1.0,
            "poisson": 1.0,
            "mnlogit": logistic,
            "ologit": logistic,
            "oprobit": 1.0,
        }
    )
    answers = pd.Series([1, 0, 1, 1, np.nan])
    assert family_of("logit").events(answers) == 1
    assert family_of("probit").events(answers.to_numpy()) == 1
    assert [n for n, f in REGISTRY.items() if f.events(answers) is not None] == [
        "logit",
        "probit",
    ]
    with pytest.raises(
        DataError, match="probit outcome 'y' must be 0/1 or bool; found"
    ):
        family_of("probit").check_outcome(np.array([0.0, 2.0]), name="y")
    with pytest.raises(DataError, match="poisson outcome 'y' must be non-negative"):
        family_of("poisson").check_outcome(np.array([-1.0, 2.0]), name="y")
    family_of("ols").check_outcome(np.array([-1.0, 2.5]), name="y")


def test_a_new_family_on_an_existing_estimator_is_one_entry(monkeypatch):
    """A registry entry alone makes ``fit(family=...)`` work when its estimator exists:
    a copy of logit under another name gives logit's table and options."""
    monkeypatch.setitem(REGISTRY, "logit2", replace(REGISTRY["logit"], name="logit2"))
    monkeypatch.setattr(families, "FAMILIES", (*families.FAMILIES, "logit2"))
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"x": rng.normal(size=300)})
    data["y"] = (data["x"] + rng.logistic(size=300) > 0).astype(int)
    new = regression.fit("y ~ x", data, family="logit2", cov="HC1")
    old = regression.fit("y ~ x", data, family="logit", cov="HC1")
    pd.testing.assert_frame_equal(new.table, old.table)
    with pytest.raises(OptionError, match="'HC0', 'HC1' or 'cluster:<column>'"):
        regression.fit(
            "y ~ x", data.assign(w=1.0), family="logit2", weights="w", cov="nonrobust"
        )


def test_importing_the_registry_loads_no_estimator():
    code = (
        "import sys, simval.families; "
        "print(sorted(m for m in ('statsmodels', 'scipy', 'pandas', 'formulaic') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
