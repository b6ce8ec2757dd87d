"""The replication report and the leaderboard: content, self-containment, figures, verdicts,
best-value marks and escaping, on validations from the real pipeline (the example task)."""

from __future__ import annotations

import base64
import dataclasses
import html
import math
import re
import struct
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from simval.errors import DataError, OptionError
from simval.report import (
    SECTION_TITLES,
    mark_best,
    option_shares,
    verdict,
    write_leaderboard,
    write_report,
)
from simval.report.render import CAVEAT
from simval.simulators import BootstrapSimulator, MarginalSimulator
from simval.study import Item
from simval.tasks import load_task
from simval.validate import Validation, compare, validate

CEILING, FLOOR = "bootstrap (ceiling)", "marginal (floor)"
NOTE = "the human data is a SIMULATED reference population"


@pytest.fixture(scope="module")
def task():
    return load_task("example")


@pytest.fixture(scope="module")
def simulators(task):
    return {
        CEILING: BootstrapSimulator(task.human),
        FLOOR: MarginalSimulator(task.human),
    }


@pytest.fixture(scope="module")
def validations(task, simulators):
    return {
        name: validate(task.study, task.human, sim, reps=3, seed=0)
        for name, sim in simulators.items()
    }


@pytest.fixture(scope="module")
def shares(task, simulators):
    personas = task.human[list(task.study.persona_columns)]
    answers = {
        name: sim.simulate(personas, task.study.items, seed=1)
        for name, sim in simulators.items()
    }
    return option_shares(task.human, answers, task.study)


@pytest.fixture(scope="module")
def report(tmp_path_factory, task, validations, shares):
    out = tmp_path_factory.mktemp("report") / "report.html"
    html_path, md_path = write_report(
        validations, study=task.study, out=out, shares=shares, notes=[NOTE]
    )
    return html_path, md_path


def expected_figures(study, *, with_shares: bool) -> int:
    """A forest plot per model, a bar chart per item (with shares), the subgroup heatmap,
    the variance ratios, the coherence bars and two heterogeneity charts."""
    return len(study.models) + (len(study.items) if with_shares else 0) + 5


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk; fails unless it is a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def data_uris(page: str) -> list[bytes]:
    return [
        base64.b64decode(m)
        for m in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    ]


def test_every_section_in_html_and_markdown(report, task):
    page, md = (p.read_text(encoding="utf-8") for p in report)
    for title in SECTION_TITLES:
        assert f"<h2>{html.escape(title)}</h2>" in page
        assert f"\n## {title}\n" in md
    assert CAVEAT in page and CAVEAT in md
    assert NOTE in page and NOTE in md
    for item in task.study.items:
        assert html.escape(item.text) in page
        assert item.text in md
    for name in (CEILING, FLOOR):
        assert name in page and name in md


def test_html_is_self_contained(report):
    page = report[0].read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert not re.search(
        r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:|//)", page, re.IGNORECASE
    )
    assert "http://" not in page and "https://" not in page
    assert "@import" not in page and "url(" not in page


def test_figures_embedded_and_written_as_pngs(report, task):
    page, md = (p.read_text(encoding="utf-8") for p in report)
    n = expected_figures(task.study, with_shares=True)
    assert page.count("<img") == n
    pngs = data_uris(page)
    assert len(pngs) == n
    for data in pngs:
        width, height = png_size(data)
        assert width > 0 and height > 0
    folder = report[1].with_name("report_figures")
    files = sorted(folder.glob("*.png"))
    assert len(files) == n
    links = re.findall(r"!\[[^\]]*\]\((report_figures/[^)]+\.png)\)", md)
    assert len(links) == n
    for link in links:
        width, height = png_size((report[1].parent / link).read_bytes())
        assert width > 0 and height > 0


def test_without_shares_deterministic_markdown_stale_figures_go(
    tmp_path, task, validations
):
    out = tmp_path / "r.html"
    (tmp_path / "r_figures").mkdir()
    (tmp_path / "r_figures" / "old.png").write_bytes(b"x")
    page, md = (
        p.read_text(encoding="utf-8")
        for p in write_report(validations, study=task.study, out=out)
    )
    assert page.count("<img") == expected_figures(task.study, with_shares=False)
    assert "were not supplied" in page and "were not supplied" in md
    assert not (tmp_path / "r_figures" / "old.png").exists()
    assert (
        write_report(validations, study=task.study, out=out)[1].read_text(
            encoding="utf-8"
        )
        == md
    )


def test_headline_table_marks_best_among_competitors(tmp_path, task, validations):
    table = compare(
        {
            n: BootstrapSimulator(task.human)
            if n == CEILING
            else MarginalSimulator(task.human)
            for n in validations
        },
        task.human,
        task.study,
        reps=3,
        seed=0,
    )
    page = write_report(
        validations,
        study=task.study,
        out=tmp_path / "r.html",
        leaderboard=table,
        exclude=("human", CEILING),
    )[0].read_text(encoding="utf-8")
    headline = page.split("<h2>Headline table</h2>")[1].split("</table>")[0]
    rows = {
        row.split("</td>")[0].split(">")[-1]: row for row in headline.split("<tr>")[2:]
    }
    assert 'class="num best"' not in rows[CEILING]
    assert rows[FLOOR].count('class="num best"') == 9  # the only competitor
    assert "Rows never marked: human, bootstrap (ceiling)." in page


def test_verdicts_ceiling_fit_floor_not(validations, task):
    for model in task.study.models:
        ceiling = verdict(validations[CEILING], model.formula, simulator=CEILING)
        floor = verdict(validations[FLOOR], model.formula, simulator=FLOOR)
        assert ceiling.fit is True and ceiling.text.endswith(": fit for inference.")
        assert floor.fit is False and "not fit for inference" in floor.text
        assert floor.recovered < floor.n_terms
        assert (
            ceiling.n_terms
            == floor.n_terms
            == len(
                [
                    t
                    for t in validations[FLOOR].coefficients.query(
                        "formula == @model.formula and subgroup == 'overall'"
                    )["term"]
                    if t != "Intercept"
                ]
            )
        )


def constructed(validation, *, sign_f1, fpr, coverage, failure=""):
    """A Validation whose one formula has hand-made coefficient and recovery rows."""
    base = {
        "formula": "y ~ a + b + c + d + e",
        "subgroup": "overall",
        "level": "overall",
    }
    classes = {
        "Intercept": ("positive", "negative"),  # excluded: not a finding
        "a": ("positive", "positive"),  # recovered
        "b": ("negative", "null"),  # lost
        "c": ("null", "positive"),  # false positive
        "d": ("positive", "negative"),  # reversed
        "e": (None, "null"),  # not estimable on the human data
    }
    coefficients = pd.DataFrame(
        [
            {**base, "term": t, "human_class": h, "sim_class": s}
            for t, (h, s) in classes.items()
        ]
    )
    recovery = pd.DataFrame(
        [
            {
                **base,
                "n_terms": 6,
                "sign_f1": sign_f1,
                "false_positive_rate": fpr,
                "coverage": coverage,
                "failure": failure,
            }
        ]
    )
    return dataclasses.replace(validation, coefficients=coefficients, recovery=recovery)


@pytest.mark.parametrize(
    ("sign_f1", "fpr", "coverage", "fit", "reasons"),
    [
        (0.9, 0.05, 0.86, True, ()),
        (
            math.nan,
            math.nan,
            0.95,
            True,
            (),
        ),  # nothing significant anywhere; no human nulls
        (0.89, 0.05, 0.86, False, ("sign-F1 below 0.9",)),
        (0.95, 0.06, 0.86, False, ("false-positive rate above 0.05",)),
        (0.95, 0.0, 0.85, False, ("coverage below 0.855",)),
    ],
)
def test_verdict_rule_on_a_constructed_case(
    validations, sign_f1, fpr, coverage, fit, reasons
):
    v = verdict(
        constructed(validations[FLOOR], sign_f1=sign_f1, fpr=fpr, coverage=coverage),
        "y ~ a + b + c + d + e",
        simulator="x",
    )
    assert (v.n_terms, v.recovered, v.lost, v.false_positives, v.reversed) == (
        4,
        1,
        1,
        1,
        1,
    )
    assert v.fit is fit and v.failing == reasons
    assert "recovered for 1 of 4 terms" in v.text
    assert "1 false positive (terms the humans show no effect for" in v.text
    assert "1 lost finding" in v.text and "1 sign reversal" in v.text
    assert "1 term not estimable on the human data" in v.text
    assert v.text.endswith(
        ": fit for inference."
        if fit
        else f": not fit for inference ({'; '.join(reasons)})."
    )


def test_verdict_when_no_verdict_is_possible(validations):
    failed = constructed(
        validations[FLOOR], sign_f1=1, fpr=0, coverage=1, failure="perfect separation"
    )
    v = verdict(failed, "y ~ a + b + c + d + e", simulator="x")
    assert v.fit is None and v.conclusion == "no verdict"
    assert "the human model could not be estimated (perfect separation)" in v.text
    missing = verdict(validations[FLOOR], "y ~ nothing", simulator="x")
    assert missing.fit is None and "no estimates for this formula" in missing.text


# --- mark_best -------------------------------------------------------------------------

NAN = math.nan
HAND = pd.DataFrame(
    {
        "jsd": [0.1, 0.1, NAN, NAN, 0.0],
        "subgroup_jsd_gap": [0.3, 0.2, 0.25, NAN, 0.0],
        "variance_ratio": [0.5, 2.0, 0.0, NAN, 1.0],
        "unique_patterns": [90, 120, 105, 100, 100],
        "entropy": [4.0, 6.0, NAN, 5.0, 5.0],
        "incoherence": [0.9, 0.3, 0.2, 0.25, 0.25],
        "sign_f1": [0.7, 0.8, 0.6, NAN, 1.0],
        "false_positive_rate": [0.0, 0.1, 0.0, NAN, 0.0],
        "coverage": [0.9, 1.0, 0.5, NAN, 0.95],
    },
    index=pd.Index(["A", "B", "C", "human", "ceiling"], name="simulator"),
)
BEST = {  # column -> rows marked, with the ceiling excluded as a reference
    "jsd": {"A", "B"},  # tie; NaN never best
    "subgroup_jsd_gap": {"B"},
    "variance_ratio": {"A", "B"},  # 1/2 and 2 tie on the log scale; 0 never best
    "unique_patterns": {"C"},  # closest to the human 100, not the most
    "entropy": {"A", "B"},
    "incoherence": {"B", "C"},  # 0.05 either side of the human 0.25
    "sign_f1": {"B"},
    "false_positive_rate": {"A", "C"},
    "coverage": {"A", "B"},  # 0.05 either side of 0.95
}


def test_mark_best_directions_ties_nan_and_exclusions():
    marks = mark_best(HAND, exclude=("human", "ceiling"))
    assert marks.index.equals(HAND.index) and list(marks.columns) == list(HAND.columns)
    assert marks.dtypes.eq(bool).all()
    for column, rows in BEST.items():
        assert set(marks.index[marks[column]]) == rows, column
    assert not marks.loc[["human", "ceiling"]].to_numpy().any()


def test_mark_best_nominal_coverage_and_default_exclusion():
    assert set(HAND.index[mark_best(HAND, nominal_coverage=0.5)["coverage"]]) == {"C"}
    default = mark_best(HAND)  # only the human row is excluded: the ceiling competes
    assert set(HAND.index[default["sign_f1"]]) == {"ceiling"}


def test_mark_best_without_human_row_marks_no_human_targets():
    marks = mark_best(HAND.drop(index="human"), exclude=())
    assert not marks[["unique_patterns", "entropy", "incoherence"]].to_numpy().any()
    assert marks["sign_f1"].sum() == 1


def test_mark_best_bad_input():
    with pytest.raises(OptionError, match="unknown leaderboard column.*bogus"):
        mark_best(HAND.assign(bogus=1.0))
    with pytest.raises(DataError, match="'jsd' holds non-numeric"):
        mark_best(HAND.assign(jsd="low"))
    with pytest.raises(OptionError, match="nominal_coverage"):
        mark_best(HAND, nominal_coverage=95)


def test_write_leaderboard_files(tmp_path):
    csv, md, page = write_leaderboard(
        HAND, tmp_path / "lb", exclude=("human", "ceiling")
    )
    assert [p.name for p in (csv, md, page)] == [
        "leaderboard.csv",
        "leaderboard.md",
        "leaderboard.html",
    ]
    read = pd.read_csv(csv, index_col="simulator", keep_default_na=False)
    assert read.loc["B", "best_in"] == (
        "jsd;subgroup_jsd_gap;variance_ratio;entropy;incoherence;sign_f1;coverage"
    )
    assert read.loc["human", "best_in"] == "" and read.loc["ceiling", "best_in"] == ""
    assert np.allclose(
        read["sign_f1"].replace("", NAN).astype(float), HAND["sign_f1"], equal_nan=True
    )
    text = md.read_text()
    assert "| B | **0.100** | **0.200** | **2** |" in text
    assert "| ceiling | 0 | 0 | 1 |" in text
    assert "Rows never marked: human, ceiling." in text
    page_text = page.read_text()
    assert page_text.count('class="num best"') == int(
        mark_best(HAND, exclude=("human", "ceiling")).to_numpy().sum()
    )
    assert "<script" not in page_text and "Bold: the best value" in page_text


# --- escaping and bad input -------------------------------------------------------------


def test_user_text_is_escaped(tmp_path, task, validations):
    evil = "<script>alert(1)</script> a|b *c*"
    items = (
        Item(**{**dataclasses.asdict(task.study.items[0]), "text": evil}),
        *task.study.items[1:],
    )
    study = dataclasses.replace(task.study, items=items)
    named = {"<i>odd|name</i>": validations[FLOOR]}
    page, md = (
        p.read_text(encoding="utf-8")
        for p in write_report(named, study=study, out=tmp_path / "e.html")
    )
    assert "<script" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;i&gt;odd|name&lt;/i&gt;" in page
    assert "<script" not in md and "<i>" not in md
    assert r"&lt;script&gt;alert(1)&lt;/script&gt; a\|b \*c\*" in md
    assert r"&lt;i&gt;odd\|name&lt;/i&gt;" in md


def test_bad_report_input(tmp_path, task, validations, shares):
    with pytest.raises(OptionError, match=r"report\.htm.*must end in \.html"):
        write_report(validations, study=task.study, out=tmp_path / "report.htm")
    with pytest.raises(OptionError, match="non-empty"):
        write_report({}, study=task.study, out=tmp_path / "r.html")
    with pytest.raises(OptionError, match="'human'"):
        write_report(
            {"human": validations[FLOOR]}, study=task.study, out=tmp_path / "r.html"
        )
    other = dataclasses.replace(validations[FLOOR], alpha=0.1)
    with pytest.raises(OptionError, match="different alpha"):
        write_report(
            {"a": validations[CEILING], "b": other},
            study=task.study,
            out=tmp_path / "r.html",
        )
    with pytest.raises(DataError, match="shares lacks column.*share"):
        write_report(
            validations,
            study=task.study,
            out=tmp_path / "r.html",
            shares=shares.drop(columns="share"),
        )


def test_option_shares(task, shares):
    assert list(shares.columns) == ["simulator", "item", "code", "share"]
    sums = shares.groupby(["simulator", "item"])["share"].sum()
    assert np.allclose(sums, 1)
    human = shares.query("simulator == 'human' and item == 'share'").set_index("code")[
        "share"
    ]
    assert human.to_dict() == task.human["share"].value_counts(normalize=True).to_dict()
    bad = task.human.assign(share=7)
    with pytest.raises(DataError, match="'share'.*7"):
        option_shares(task.human, {"x": bad}, task.study)
    with pytest.raises(OptionError, match="'human'"):
        option_shares(task.human, {"human": task.human}, task.study)


def test_validation_methods_write_reports(tmp_path, task, validations):
    reread = Validation.from_json(validations[FLOOR].to_json())
    page = reread.to_html(tmp_path / "one.html", study=task.study, notes="a note")
    md = validations[FLOOR].to_markdown(
        tmp_path / "two.md", study=task.study, name="floor"
    )
    assert page == tmp_path / "one.html" and md == tmp_path / "two.md"
    assert "MarginalSimulator(n=600)" in page.read_text()
    assert "<li>a note</li>" in page.read_text()
    assert "**floor**" in md.read_text()
    assert not (tmp_path / "one.md").exists() and not (tmp_path / "two.html").exists()
    assert len(list((tmp_path / "two_figures").glob("*.png"))) == expected_figures(
        task.study, with_shares=False
    )


def test_import_simval_stays_free_of_matplotlib_and_figures_skip_pyplot():
    code = (
        "import sys, simval; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'; "
        "assert 'simval.report' not in sys.modules, 'simval.report imported'; "
        "from simval.report.plots import grouped_bars; "
        "png = grouped_bars(['a'], {'human': [1.0]}, colors={'human': 'k'}, ylabel='y', "
        "title='t'); assert png[:4] == b'\\x89PNG'; "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_verdict_when_the_humans_show_no_effect(validations):
    """A small sample where no human term is significant has no finding to recover."""
    base = constructed(validations[FLOOR], sign_f1=0.0, fpr=0.5, coverage=0.9)
    coefficients = base.coefficients.assign(
        human_class=["positive", "null", "null", "null", "null", None],
        sim_class=["positive", "null", "positive", "null", "null", "null"],
    )
    v = verdict(
        dataclasses.replace(base, coefficients=coefficients),
        "y ~ a + b + c + d + e",
        simulator="x",
    )
    assert v.fit is None and v.conclusion == "no verdict"
    assert v.false_positives == 1 and v.n_terms == 4
    assert "the humans show no significant effect among the 4 terms" in v.text
    assert f"(n = {base.n_human})" in v.text and "call 1 of them significant" in v.text
