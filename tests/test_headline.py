"""A headline metric is defined once: the registry entry's ``value`` gives its point
value, its bootstrap draws and its reference, and every reader shows it. Two metrics
defined here alone are registered for the length of a ``with``: the first item's mean
JSD (checked against the distributions table) and twice the JSD (whose value, CI and
reference must be twice the built-in's)."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pandas as pd
import pytest

from simval import MarginalSimulator
from simval.comparison import REPLICATE_SCORES
from simval.errors import OptionError
from simval.headline import (
    BUILT_IN,
    HEADLINE,
    HUMAN_LEVELS,
    METRICS,
    Metric,
    mean_over_items,
    registered,
)
from simval.metrics import geometric_mean, nan_mean
from simval.report import write_html, write_leaderboard
from simval.report.blocks import interval, md_escape, number
from simval.report.leaderboard import leaderboard_text
from simval.results import REFERENCE_ROW, summary_table
from simval.simulators import BootstrapSimulator
from simval.tasks import load_task
from simval.validate import validate

FIRST = Metric(
    "first_item_jsd", "first-item JSD", "lowest", "fresh", "bootstrap",
    lambda draw: mean_over_items(draw.jsd()[:, :1]),
)  # fmt: skip
TWICE = Metric(
    "twice_jsd", "twice the JSD", "lowest", "fresh", "bootstrap",
    lambda draw: 2 * mean_over_items(draw.jsd()), bounds=(0.0, 2.0),
)  # fmt: skip
FAST = {"reps": 3, "resamples": 20, "seed": 0}


@pytest.fixture(scope="module")
def task():
    return load_task("example")


@pytest.fixture(scope="class")
def registered_run(task):
    """Validations of two simulators made and read while the toy metrics are registered
    (the tests of ``TestRegistered``)."""
    with registered(FIRST, TWICE):
        validations = {
            "resampling": validate(
                task.study, task.human, BootstrapSimulator(task.human), **FAST
            ),
            "floor": validate(
                task.study, task.human, MarginalSimulator(task.human), **FAST
            ),
        }
        yield validations


class TestRegistered:
    """While the toy metrics are registered."""

    def test_one_definition_gives_the_value_the_draws_and_the_reference(
        self, task, registered_run
    ):
        """The first item's value is the distributions table's (a separate computation);
        twice the JSD is twice the built-in's value, CI, draws and reference, so the draws
        and the reference come from the same ``value``."""
        item = task.study.items[0].name
        for validation in registered_run.values():
            summary = validation.summary()
            table = validation.distributions.set_index(["item", "subgroup", "level"])
            assert summary["first_item_jsd"] == pytest.approx(
                table.loc[(item, "overall", "overall"), "jsd"], rel=1e-9
            )
            for end in ("", "_ci_low", "_ci_high", "_reference"):
                assert summary[f"twice_jsd{end}"] == pytest.approx(
                    2 * summary[f"jsd{end}"], rel=1e-9
                ), end
            draws = validation.draws.pivot(
                index="draw", columns="metric", values="value"
            )
            assert len(draws) == FAST["resamples"]
            np.testing.assert_allclose(draws["twice_jsd"], 2 * draws["jsd"], rtol=1e-9)
            low, value, high = (
                summary[f"first_item_jsd{end}"] for end in ("_ci_low", "", "_ci_high")
            )
            assert math.isfinite(summary["first_item_jsd_reference"])
            assert low < high and math.isfinite(value)
            row = validation.headline.set_index("metric").loc["first_item_jsd"]
            assert row["label"] == "first-item JSD" and math.isfinite(row["mcse"])

    def test_a_registered_metric_shows_in_every_reader(self, tmp_path, registered_run):
        """summary(), summary_table, the leaderboard (CSV, Markdown, HTML), the command's
        text table and the HTML report each show it with its CI and reference, after the
        built-in metrics, whose order and labels stay."""
        assert [m.name for m in HEADLINE] == [
            *(m.name for m in BUILT_IN),
            "first_item_jsd",
            "twice_jsd",
        ]
        floor = registered_run["floor"].summary()
        shown = interval(
            floor["first_item_jsd"],
            floor["first_item_jsd_ci_low"],
            floor["first_item_jsd_ci_high"],
        )
        reference = number(floor["first_item_jsd_reference"])
        assert "[" in shown
        table = summary_table(registered_run)
        assert table.columns[-2:].tolist() == ["first_item_jsd", "twice_jsd"]
        assert table.at["floor", "first_item_jsd"] == floor["first_item_jsd"]
        assert (
            table.at[REFERENCE_ROW, "first_item_jsd"]
            == floor["first_item_jsd_reference"]
        )
        csv, md, page = write_leaderboard(registered_run, tmp_path / "board")
        frame = pd.read_csv(csv, index_col=0)
        for end in ("", "_ci_low", "_ci_high"):
            assert frame.at["floor", f"first_item_jsd{end}"] == pytest.approx(
                floor[f"first_item_jsd{end}"], rel=1e-12
            )
        assert frame.at[REFERENCE_ROW, "first_item_jsd"] == pytest.approx(
            floor["first_item_jsd_reference"], rel=1e-12
        )
        text = leaderboard_text(registered_run)
        (line,) = [row for row in text.splitlines() if row.startswith("first-item JSD")]
        assert shown in line and reference in line
        report = write_html(registered_run, out=tmp_path / "report.html")
        for path, end, escape in (
            (md, "\n", md_escape),
            (page, "</tr>", str),
            (report, "</tr>", str),
        ):
            # the pages keep each CI on one line in a span; the text reads the same
            written = re.sub(
                r'<span class="ci">(.*?)</span>',
                r"\1",
                path.read_text(encoding="utf-8"),
            )
            start = written.index("first-item JSD")
            row = written[start : written.index(end, start)]
            assert escape(shown) in row and reference in row, path.name


def _tables_values(validation) -> dict[str, float]:
    """The built-in metrics as the tables define them (docs/metrics.md), computed from
    the validation's tables, not by counting."""

    def overall(table):
        return table[(table["subgroup"] == "overall") & (table["level"] == "overall")]

    cells = validation.distributions
    cells = cells[(cells["subgroup"] != "overall") & ~cells["small"].astype(bool)]
    per_cell = cells.groupby(["subgroup", "level"])["jsd"].mean().dropna()
    hetero = overall(validation.heterogeneity).iloc[0]
    pairs = overall(validation.coherence)
    pairs = pairs[pairs["scope"] == "pair"]
    recovery = overall(validation.recovery)
    return {
        "jsd": nan_mean(overall(validation.distributions)["jsd"]),
        "wasserstein": nan_mean(overall(validation.distributions)["wasserstein"]),
        "subgroup_jsd_gap": per_cell.max() - per_cell.min(),
        "variance_ratio": geometric_mean(overall(validation.variance)["ratio"]),
        "unique_patterns": hetero["unique_patterns_sim"],
        "unique_patterns_human": hetero["unique_patterns_human"],
        "entropy": hetero["entropy_sim"],
        "entropy_human": hetero["entropy_human"],
        "incoherence": nan_mean(pairs["incoherence_sim"]),
        "incoherence_human": nan_mean(pairs["incoherence_human"]),
        **{m: nan_mean(recovery[m]) for m in REPLICATE_SCORES},
    }


@pytest.mark.parametrize("weighted", [False, True])
def test_the_built_in_definitions_give_the_tables_values(task, weighted):
    """Each built-in metric's ``value`` on the data as drawn (counting) equals the
    metric computed from the validation's tables, with survey weights or without."""
    study, human = task.study, task.human
    if weighted:
        weights = np.random.default_rng(1).uniform(0.5, 2.0, len(human))
        study, human = dataclasses.replace(study, weight="w"), human.assign(w=weights)
    validation = validate(
        study, human, MarginalSimulator(task.human), reps=3, resamples=0, seed=2
    )
    summary = validation.summary()
    expected = _tables_values(validation)
    assert set(expected) == {*METRICS, *HUMAN_LEVELS} - {"nonresponse"}
    for name, value in expected.items():
        assert math.isfinite(value), name
        assert summary[name] == pytest.approx(value, rel=1e-9), name


def test_registration_lasts_the_with_and_refuses_a_clash():
    """Outside the ``with`` the registry is the built-in one again; a taken name (a
    metric's or a human level's) and a replicate metric are refused in one line."""
    before = list(HEADLINE)
    assert [(m.name, m.label) for m in before] == [
        ("jsd", "JSD"), ("wasserstein", "ordinal distance"),
        ("subgroup_jsd_gap", "subgroup JSD gap"), ("variance_ratio", "variance ratio"),
        ("unique_patterns", "distinct patterns"), ("entropy", "pattern entropy"),
        ("incoherence", "incoherence"), ("nonresponse", "nonresponse"),
        ("sign_f1", "sign-F1"), ("false_positive_rate", "false-positive rate"),
        ("coverage", "difference-CI coverage"),
    ]  # fmt: skip
    with registered(FIRST):
        assert "first_item_jsd" in METRICS and HEADLINE[-1] is FIRST
    assert list(HEADLINE) == before == list(BUILT_IN)
    assert "first_item_jsd" not in METRICS
    assert list(HUMAN_LEVELS) == [m.human for m in BUILT_IN if m.human]
    clash = Metric("jsd", "again", "lowest", "fresh", "bootstrap", FIRST.value)
    with pytest.raises(OptionError, match="already named 'jsd'"), registered(clash):
        pass
    human = Metric(
        "entropy_human", "again", "lowest", "fresh", "bootstrap", FIRST.value
    )
    with (
        pytest.raises(OptionError, match="already named 'entropy_human'"),
        registered(human),
    ):
        pass
    replicated = Metric("f1", "F1", "highest", "fresh", "replicates", FIRST.value)
    with (
        pytest.raises(
            OptionError,
            match=r"^uncertainty='replicates' is not allowed; choose 'bootstrap'$",
        ),
        registered(replicated),
    ):
        pass
    with (
        pytest.raises(OptionError, match="^'jsd' is a str, not a Metric$"),
        registered("jsd"),
    ):
        pass
    assert list(HEADLINE) == before
