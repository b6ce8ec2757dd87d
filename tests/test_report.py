"""The replication report and the leaderboard: content and its order (the answer first),
self-containment, no path of the machine, figures (legends off the data, readable
heatmaps, subgroup sizes), the verdict restated from the validations, the rank marks
(best, tie) and escaping, on validations from the real pipeline (the example task and a
known data-generating process)."""

from __future__ import annotations

import base64
import dataclasses
import html
import inspect
import itertools
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from calibration import STUDIES, answers, known_simulator, personas
from fake_lm import UniformLM

import simval
from simval import Item, MarginalSimulator
from simval.errors import DataError, OptionError
from simval.headline import HEADLINE
from simval.rectify import rectify
from simval.report import (
    SECTION_TITLES,
    build_sections,
    leaderboard_marks,
    plots,
    write_html,
    write_leaderboard,
    write_markdown,
    write_report,
)
from simval.report.blocks import md_escape, number
from simval.report.inference import write_rectified_report
from simval.report.pages import figures_of
from simval.report.render import CAVEAT
from simval.results import (
    HUMAN_ROW,
    REFERENCE_ROW,
    Validation,
    example_prompts,
    identity_of,
    rank,
    summary_table,
    verdict_sentence,
)
from simval.simulators import BootstrapSimulator
from simval.tasks import load_task
from simval.validate import validate

RESAMPLING, FLOOR = "bootstrap (resampling reference)", "marginal (floor)"
NOTE = "the human data is a SIMULATED reference population"
FAST = {"reps": 3, "resamples": 20, "seed": 0}


@pytest.fixture(scope="module")
def task():
    return load_task("example")


@pytest.fixture(scope="module")
def validations(task):
    simulators = {
        RESAMPLING: BootstrapSimulator(task.human),
        FLOOR: MarginalSimulator(task.human),
    }
    return {
        name: validate(task.study, task.human, sim, **FAST)
        for name, sim in simulators.items()
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory, validations):
    out = tmp_path_factory.mktemp("report") / "report.html"
    return write_report(validations, out=out, notes=[NOTE], references=(RESAMPLING,))


def expected_figures(study) -> int:
    """Two forest plots per model (differences, estimates), a bar chart per item, the
    subgroup heatmap, the variance ratios, the coherence bars, two heterogeneity charts."""
    return 2 * len(study.models) + len(study.items) + 5


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


def section(page: str, title: str) -> str:
    """The HTML of one section of a report, without the spans that keep each CI on
    one line (``value [low, high]`` reads as it is written)."""
    part = page.split(f"<h2>{html.escape(title)}</h2>")[1].split("</section>")[0]
    return re.sub(r'<span class="ci">(.*?)</span>', r"\1", part)


def table_rows(fragment: str) -> dict[str, list[str]]:
    """First table of an HTML fragment: first cell -> the cells' inner HTML."""
    table = fragment.split("<tbody>")[1].split("</tbody>")[0]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table, re.DOTALL):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)
        rows[html.unescape(cells[0])] = cells[1:]
    return rows


def test_every_section_in_html_and_markdown(report, task, validations):
    page, md = (p.read_text(encoding="utf-8") for p in report)
    for title in SECTION_TITLES:
        assert f"<h2>{html.escape(title)}</h2>" in page
        assert f"\n## {title}\n" in md
    assert CAVEAT in html.unescape(page) and CAVEAT in md
    assert NOTE in page and NOTE in md
    for item in task.study.items:
        assert html.escape(item.text) in page
        assert item.text in md
    for name in (RESAMPLING, FLOOR):
        assert name in page and name in md
    assert validations[FLOOR].fingerprint[:16] in page


def test_the_answer_comes_first_in_html_and_markdown(report):
    """Decisions, the one-line caveat, the headline table and the notes; then every
    figure; then the study's declaration: in the same order in both files."""
    page, md = (p.read_text(encoding="utf-8") for p in report)
    assert SECTION_TITLES[:2] == ("Verdict", "Headline table")
    assert "\n" not in CAVEAT
    for text, heading, caveat, note, figure in (
        (html.unescape(page), "<h2>{}</h2>", f'<p class="callout">{CAVEAT}</p>',
         f"<li>{NOTE}</li>", "<img"),
        (md, "\n## {}\n", f"> **{CAVEAT}**", f"- {NOTE}", "!["),
    ):  # fmt: skip
        starts = [text.index(heading.format(title)) for title in SECTION_TITLES]
        assert starts == sorted(starts)
        headline, study = (
            text.index(heading.format(t)) for t in ("Headline table", "The study")
        )
        assert text.index(caveat) < headline < text.index(note) < text.index(figure)
        assert text.rindex(figure) < study


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
    n = expected_figures(task.study)
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


# --- figures: legends off the data, readable heatmaps, subgroup sizes -----------------


@pytest.fixture(scope="module")
def figures(validations) -> dict[str, object]:
    """The report's matplotlib figures by name."""
    sections = build_sections(validations, references=(RESAMPLING,))
    return {f.name: f.figure for f in figures_of(sections)}


def drawn(figure):
    """Lay out and draw a figure; its renderer, for window extents."""
    figure.canvas.draw()
    return figure.canvas.get_renderer()


def overlap(a, b) -> bool:
    """Two window extents share some area (touching edges do not count)."""
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def texts_of(figure) -> list:
    """Every visible, non-empty text: tick labels, titles, axis labels, cell numbers."""
    texts = list(figure.texts)
    for ax in figure.axes:
        texts += [*ax.get_xticklabels(), *ax.get_yticklabels(), *ax.texts]
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label]
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def test_legends_never_cover_bars_or_intervals(figures):
    kinds = set()
    for name, figure in figures.items():
        if not any(ax.containers for ax in figure.axes):
            continue
        renderer = drawn(figure)
        legends = [
            *figure.legends,
            *filter(None, (a.get_legend() for a in figure.axes)),
        ]
        assert len(legends) == 1, name
        legend = legends[0].get_window_extent(renderer)
        for ax in figure.axes:
            assert not overlap(legend, ax.get_window_extent(renderer)), name
            for container in ax.containers:
                kinds.add(type(container).__name__)
                for artist in container.get_children():
                    box = artist.get_window_extent(renderer)
                    assert not overlap(legend, box), f"{name}: legend over {artist}"
        for text in texts_of(figure):
            assert not overlap(legend, text.get_window_extent(renderer)), name
    assert {"BarContainer", "ErrorbarContainer"} <= kinds


def assert_readable(figure) -> None:
    """No two texts of a heatmap collide, every text is at least 9 pt, and every
    number sits inside its own cell."""
    renderer = drawn(figure)
    texts = texts_of(figure)
    boxes = [t.get_window_extent(renderer) for t in texts]
    for (a, box_a), (b, box_b) in itertools.combinations(zip(texts, boxes), 2):
        assert not overlap(box_a, box_b), (a.get_text(), b.get_text())
    assert min(t.get_fontsize() for t in texts) >= 9
    numbers = [(ax, t) for ax in figure.axes for t in ax.texts]
    assert numbers
    for ax, number_text in numbers:
        column, row = number_text.get_position()
        corners = ax.transData.transform(
            [(column - 0.5, row - 0.5), (column + 0.5, row + 0.5)]
        )
        (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
        box = number_text.get_window_extent(renderer)
        assert x0 <= box.x0 and box.x1 <= x1 and y0 <= box.y0 and box.y1 <= y1


def test_the_report_heatmap_is_readable(figures):
    assert_readable(figures["subgroup-jsd"])


@pytest.mark.parametrize(
    ("panels", "rows", "columns"),
    [
        (1, 1, ["a", "b"]),
        (2, 5, ["concern", "trust"]),
        (4, 12, [f"share_item_{k}" for k in range(10)]),
    ],
)
def test_heatmaps_are_readable_at_any_size(panels, rows, columns):
    """Few or many panels, rows and columns, short and long labels: no collision."""
    rng = np.random.default_rng(0)
    index = [f"ethnicity=Level number {k} (n={10 * k + 1})" for k in range(rows)]
    frames = {
        f"simulator {k}: fine-tuned on a 20% pilot (LoRA rank 8)": pd.DataFrame(
            rng.uniform(0, 0.3, size=(rows, len(columns))), index=index, columns=columns
        )
        for k in range(panels)
    }
    next(iter(frames.values())).iloc[0, 0] = np.nan
    assert_readable(plots.heatmap(frames, title="JSD by level and item", label="JSD"))


def test_subgroup_levels_are_labelled_with_their_human_n(figures, validations):
    floor = validations[FLOOR]
    cells = floor.distributions.query("subgroup != 'overall' and not small")
    sizes = cells.groupby(["subgroup", "level"], sort=False)["n_human"].max()
    expected = [f"{s}={level} (n={n})" for (s, level), n in sizes.items()]
    heatmap = figures["subgroup-jsd"]
    drawn(heatmap)
    assert [t.get_text() for t in heatmap.axes[0].get_yticklabels()] == expected
    groups = floor.heterogeneity.query("not small")
    expected = [
        f"{'overall' if s == 'overall' else f'{s}={level}'} (n={n})"
        for s, level, n in zip(groups["subgroup"], groups["level"], groups["n_human"])
    ]
    for name in ("heterogeneity-unique-patterns", "heterogeneity-entropy"):
        drawn(figures[name])
        ticks = figures[name].axes[0].get_xticklabels()
        assert [t.get_text().replace("\n", " ") for t in ticks] == expected


def test_no_path_of_the_machine_in_any_report(tmp_path, validations):
    """A simulator named with a relative adapter path, written under tmp_path: neither
    tmp_path, the home directory nor the package's folder appears in the HTML (its
    embedded PNGs included), the Markdown or the leaderboard; figure links are relative."""
    given = "HFSimulator('default', adapter='simval-demo/adapter', mode='probability')"
    named = {
        RESAMPLING: validations[RESAMPLING],
        "fine-tuned": dataclasses.replace(validations[FLOOR], simulator=given),
    }
    out = tmp_path / "runs" / "report.html"
    note = "Respondents: 600 from data/human.csv."
    page, md = (
        p.read_text(encoding="utf-8")
        for p in write_report(named, out=out, notes=[note], references=(RESAMPLING,))
    )
    single = write_markdown(validations[FLOOR], out=tmp_path / "one.md").read_text()
    boards = write_leaderboard(named, tmp_path / "board", references=(RESAMPLING,))
    machine = {
        str(tmp_path),
        str(tmp_path.resolve()),
        str(Path.home()),
        str(Path(simval.__file__).resolve().parent),
    }
    assert all(len(path) > 1 for path in machine)
    pngs = data_uris(page)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    for shown in (text, md, single, *(b.read_text() for b in boards)):
        for path in machine:
            assert path not in shown
    for data in pngs:
        for path in machine:
            assert path.encode() not in data
    assert given in html.unescape(page) and given in md and note in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links and all(not Path(link).is_absolute() for link in links)
    assert all((out.parent / link).is_file() for link in links)


def test_deterministic_markdown_and_stale_figures_go(tmp_path, validations):
    out = tmp_path / "r.html"
    (tmp_path / "r_figures").mkdir()
    (tmp_path / "r_figures" / "old.png").write_bytes(b"x")
    md = write_report(validations, out=out)[1].read_text(encoding="utf-8")
    assert not (tmp_path / "r_figures" / "old.png").exists()
    assert write_report(validations, out=out)[1].read_text(encoding="utf-8") == md


def test_headline_table_shows_value_ci_reference_and_human(report, validations):
    page = report[0].read_text(encoding="utf-8")
    rows = table_rows(section(page, "Headline table"))
    assert list(rows) == [m.label for m in HEADLINE]
    table = summary_table(validations)
    summary = validations[FLOOR].summary()
    for metric in HEADLINE:
        cells = rows[metric.label]
        value, low, high = (
            summary[f"{metric.name}{end}"] for end in ("", "_ci_low", "_ci_high")
        )
        assert cells[2] == f"{number(value)} [{number(low)}, {number(high)}]"
        reference = table.at[REFERENCE_ROW, metric.name]
        assert cells[3] == number(reference)
        assert (cells[4] != "–") == bool(metric.human)
    # one competitor and a reference: nothing is ranked, so nothing is marked
    assert "<strong>" not in section(page, "Headline table")
    assert f"Never marked: {RESAMPLING}, {REFERENCE_ROW}, {HUMAN_ROW}." in page


# --- the verdict ------------------------------------------------------------------------


def test_verdict_section_restates_each_verdicts_row(report, validations):
    """One sentence per formula and simulator leads both files; the decision tables sit
    with the coefficients."""
    page, md = (p.read_text(encoding="utf-8") for p in report)
    verdict = html.unescape(section(page, "Verdict"))
    coefficients = html.unescape(section(page, "Coefficients"))
    md_verdict = md.split("\n## Verdict\n")[1].split("\n## ")[0]
    for name, v in validations.items():
        assert len(v.verdicts) == len(v.study.models)
        for row in v.verdicts.to_dict("records"):
            sentence = verdict_sentence(row, simulator=name)
            assert row["decision"] in sentence
            assert f"<li>{sentence}</li>" in verdict
            assert f"- {md_escape(sentence)}\n" in md_verdict
            assert f"<td>{row['decision']}</td>" in coefficients
    assert verdict.count("<li>") == sum(len(v.verdicts) for v in validations.values())


def test_verdict_follows_the_row_never_recomputes(tmp_path, validations):
    """A row that says consistent is reported consistent, whatever the other tables say."""
    floor = validations[FLOOR]
    reason = "every coefficient is within its margin (a hand-made row)"
    verdicts = floor.verdicts.assign(decision="consistent", reason=reason)
    forged = dataclasses.replace(floor, verdicts=verdicts)
    page = write_html({"forged": forged}, out=tmp_path / "f.html").read_text()
    verdict = html.unescape(section(page, "Verdict"))
    decisions = section(page, "Coefficients")
    assert "<td>inconsistent</td>" not in decisions
    assert "<td>consistent</td>" in decisions
    for row in verdicts.to_dict("records"):
        assert verdict_sentence(row, simulator="forged") in verdict


def test_coefficient_table_uses_the_difference_columns(report, validations):
    page = report[0].read_text(encoding="utf-8")
    coefficients = section(page, "Coefficients")
    for header in ("difference [CI]", "equivalence p", "coverage", "failed replicates"):
        assert f"<th>{header}</th>" in coefficients
    row = validations[FLOOR].coefficients.query("term == 'concern'").iloc[0]
    assert (
        f"{row['diff']:.3f} [{row['diff_ci_low']:.3f}, {row['diff_ci_high']:.3f}]"
        in coefficients
    )


def test_failed_simulated_class_is_shown(tmp_path, validations):
    floor = validations[FLOOR]
    failed = floor.coefficients.assign(
        sim_class="failed", sim_estimate=np.nan, sim_std_error=np.nan
    )
    page = write_html(
        {"f": dataclasses.replace(floor, coefficients=failed)}, out=tmp_path / "f.html"
    ).read_text()
    assert '<td class="num">failed</td>' in section(page, "Coefficients")


# --- small cells, warnings, nonresponse ------------------------------------------------


def test_small_subgroup_cells_are_marked_and_left_out_of_the_gap(tmp_path, task):
    """At min_subgroup_n=200 the 162 respondents aged 18-34 are a small cell."""
    simulator = MarginalSimulator(task.human)
    v = validate(task.study, task.human, simulator, min_subgroup_n=200, **FAST)
    cells = v.distributions.query("item == 'concern' and subgroup != 'overall'")
    assert cells.loc[cells["small"], "level"].tolist() == ["18-34"]
    page = write_html({"m": v}, out=tmp_path / "s.html").read_text()
    subgroups = section(page, "Subgroup alignment")
    rows = table_rows(subgroups)
    assert "age_band=18-34 (small)" in rows and "age_band=35-54" in rows
    assert rows["age_band=18-34 (small)"][0] == "162"
    assert 'class="num small"' in subgroups
    counted = (
        v.distributions.query("subgroup != 'overall' and not small")
        .groupby(["subgroup", "level"])["jsd"]
        .mean()
    )
    assert rows["gap (worst − best)"][-1] == number(counted.max() - counted.min())
    assert float(rows["gap (worst − best)"][-1]) == pytest.approx(
        v.summary()["subgroup_jsd_gap"], abs=5e-4
    )
    assert "age_band=18-34 (small)" in table_rows(section(page, "Heterogeneity"))
    # the decision table: a small cell is undetermined whatever its Wald p, and says so
    decisions = subgroups.split("The decision per formula within each subgroup")[1]
    small = re.findall(r'<td class="small">([^<]*age_band=18-34[^<]*)</td><td[^>]*>'
                       r'[^<]*</td><td class="small">([^<]*)</td>', decisions)  # fmt: skip
    assert small and all(
        cell.startswith("undetermined, too small to judge (Wald p")
        and cell.endswith("; not acted on) (small)")
        for _, cell in small
    ), small
    rule = html.unescape(
        decisions.split("<strong>(small)</strong>: ")[1].split("</p>")[0]
    )
    assert "fewer than 200 human respondents" in rule
    assert "fewer than 10 humans giving the rarer answer per coefficient" in rule
    assert "events-per-parameter rule" in rule and "not acted on" in rule


def test_warnings_and_nonresponse_are_shown(tmp_path, validations):
    floor = validations[FLOOR]
    notes = {
        **floor.notes,
        "warnings": ["y ~ x: cluster-robust errors on 12 clusters are unreliable"],
        "nonresponse": {**floor.notes["nonresponse"], "trust": 0.25},
        "unparseable": {"trust": 5, "share": 2},
    }
    page = write_html(
        {"m": dataclasses.replace(floor, notes=notes)}, out=tmp_path / "w.html"
    ).read_text()
    simulators = section(page, "Simulators compared")
    assert "cluster-robust errors on 12 clusters are unreliable" in simulators
    assert "25.0%" in simulators and ">7</td>" in simulators
    clean = section(
        write_html(validations, out=tmp_path / "c.html").read_text(),
        "Simulators compared",
    )
    assert "No warnings." in clean


# --- the leaderboard --------------------------------------------------------------------


def test_identical_validations_tie_and_are_never_best(tmp_path, task, validations):
    """Two validations of one simulator with one seed cannot be told apart: all ties."""
    twin = {"a": validations[FLOOR], "b": validations[FLOOR]}
    marks = leaderboard_marks(twin)
    assert "best" not in marks.to_numpy()
    assert (marks == "tie").to_numpy().any()
    assert marks.loc["a"].tolist() == marks.loc["b"].tolist()
    csv, md, page = write_leaderboard(twin, tmp_path / "lb")
    board = pd.read_csv(csv, index_col="simulator", keep_default_na=False)
    assert board.loc["a", "best_in"] == "" and board.loc["a", "tied_in"] != ""
    assert board.loc["a", "tied_in"] == board.loc["b", "tied_in"]
    assert "<strong>" not in page.read_text() and "<em>" in page.read_text()
    assert re.search(r"\| \*[0-9.]+ \\\[", md.read_text())  # italic in the Markdown


def known_process():
    """The known OLS process of tests/calibration.py (y on 0..8 from x and g plus
    noise): its study, 400 humans and a simulator drawing from the truth."""
    people = personas(400, seed=0, family="ols")
    human = people.assign(y=answers(people, family="ols", seed=2))
    return STUDIES["ols"], human, known_simulator(family="ols")


def test_a_clearly_better_simulator_is_best(tmp_path):
    study, human, perfect = known_process()
    pair = {
        "perfect": validate(study, human, perfect, **FAST),
        "marginal": validate(study, human, MarginalSimulator(human), **FAST),
    }
    marks = leaderboard_marks(pair)
    pd.testing.assert_frame_equal(marks, rank(pair, level=0.95))
    # the marginal simulator ignores x and g: it recovers no sign, covers no difference
    assert marks.at["perfect", "sign_f1"] == "best"
    assert marks.at["perfect", "coverage"] == "best"
    assert marks.at["marginal", "sign_f1"] == marks.at["marginal", "coverage"] == ""
    csv, _, page = write_leaderboard(pair, tmp_path)
    board = pd.read_csv(csv, index_col="simulator")
    board[["best_in", "tied_in"]] = board[["best_in", "tied_in"]].fillna("")
    assert list(board.index) == ["perfect", "marginal", REFERENCE_ROW, HUMAN_ROW]
    assert {"sign_f1", "coverage"} <= set(board.loc["perfect", "best_in"].split(";"))
    for row in (REFERENCE_ROW, HUMAN_ROW):  # references are never marked
        assert board.loc[row, "best_in"] == board.loc[row, "tied_in"] == ""
    summary = pair["perfect"].summary()
    assert board.loc["perfect", "sign_f1"] == summary["sign_f1"]  # full precision
    assert board.loc["perfect", "sign_f1_ci_low"] == summary["sign_f1_ci_low"]
    text = page.read_text()
    assert text.count("<strong>") == int((marks == "best").to_numpy().sum())
    assert text.count("<em>") == int((marks == "tie").to_numpy().sum())
    sign_f1 = table_rows(text)["sign-F1"]
    assert sign_f1[1].startswith("<strong>") and "<strong>" not in sign_f1[2]
    assert "Bold: best" in text and "italic: tied for best" in text


def test_references_are_shown_and_never_marked(tmp_path, validations):
    marks = leaderboard_marks(validations, references=(RESAMPLING,))
    assert (marks == "").to_numpy().all()  # one competitor: nothing to rank
    csv, _, _ = write_leaderboard(validations, tmp_path, references=(RESAMPLING,))
    board = pd.read_csv(csv, index_col="simulator", keep_default_na=False)
    assert list(board.index) == [RESAMPLING, FLOOR, REFERENCE_ROW, HUMAN_ROW]
    assert (board[["best_in", "tied_in"]] == "").to_numpy().all()
    with pytest.raises(OptionError, match="'nope'.*not among"):
        write_leaderboard(validations, tmp_path, references=("nope",))


# --- only result objects ----------------------------------------------------------------


def test_reports_take_no_study_or_shares(tmp_path, validations):
    for writer in (write_report, write_html, write_markdown, build_sections):
        parameters = inspect.signature(writer).parameters
        assert "study" not in parameters and "shares" not in parameters
    with pytest.raises(TypeError, match="study"):
        write_report(validations, out=tmp_path / "r.html", study=None)


def test_a_json_round_trip_renders_the_same_report(tmp_path, validations):
    reread = {n: Validation.from_json(v.to_json()) for n, v in validations.items()}
    first = write_report(validations, out=tmp_path / "a" / "r.html")
    second = write_report(reread, out=tmp_path / "b" / "r.html")
    for one, other in zip(first, second):
        assert one.read_text(encoding="utf-8") == other.read_text(encoding="utf-8")


def test_a_validation_saved_before_the_simulated_interval_renders_the_same(
    tmp_path, validations
):
    """A Validation saved before ``sim_ci_low``/``sim_ci_high`` were columns gets them
    back when read (the report only reads them), so its report is unchanged."""
    saved = json.loads(validations[FLOOR].to_json())
    table = saved["coefficients"]
    at = [table["columns"].index(c) for c in ("sim_ci_low", "sim_ci_high")]
    table["columns"] = [c for i, c in enumerate(table["columns"]) if i not in at]
    table["data"] = [
        [v for i, v in enumerate(row) if i not in at] for row in table["data"]
    ]
    for c in ("sim_ci_low", "sim_ci_high"):
        table["dtypes"].pop(c)
    old = Validation.from_json(json.dumps(saved))
    pd.testing.assert_frame_equal(old.coefficients, validations[FLOOR].coefficients)
    first = write_html(validations[FLOOR], out=tmp_path / "a.html")
    second = write_html(old, out=tmp_path / "b.html")
    assert first.read_text(encoding="utf-8") == second.read_text(encoding="utf-8")


def test_the_report_repeats_the_missing_persona_note_from_python(tmp_path, task):
    """A report written from Python says which respondents miss persona values, as
    the validation's notes do (no side input from the command needed)."""
    holes = task.human.copy()
    holes.loc[holes.index[:2], "age"] = np.nan
    found = validate(task.study, holes, MarginalSimulator(holes), **FAST)
    note = found.notes["missing_personas"]
    assert note.startswith("2 respondents have missing persona values (age: 2)")
    page = write_html(found, out=tmp_path / "r.html").read_text(encoding="utf-8")
    assert html.unescape(page).count(note) == 1
    clean = write_html(
        validate(task.study, task.human, MarginalSimulator(task.human), **FAST),
        out=tmp_path / "clean.html",
    ).read_text(encoding="utf-8")
    assert "Persona values" in page and "Persona values" not in clean


def test_one_validation_writes_its_reports(tmp_path, validations):
    """One Validation, named by its simulator, or a mapping naming it (the library
    writes no report: ``simval.report`` reads it)."""
    reread = Validation.from_json(validations[FLOOR].to_json())
    page = write_html(reread, out=tmp_path / "one.html", notes="a note")
    md = write_markdown({"floor": validations[FLOOR]}, out=tmp_path / "two.md")
    assert page == tmp_path / "one.html" and md == tmp_path / "two.md"
    assert "MarginalSimulator(n=600)" in page.read_text()
    assert "<li>a note</li>" in page.read_text()
    assert "floor on share" in md.read_text()
    assert not (tmp_path / "one.md").exists() and not (tmp_path / "two.html").exists()
    figures = len(list((tmp_path / "two_figures").glob("*.png")))
    assert figures == expected_figures(validations[FLOOR].study)


# --- escaping and bad input -------------------------------------------------------------


def test_user_text_is_escaped(tmp_path, task, validations):
    evil = "<script>alert(1)</script> a|b *c*"
    items = (
        Item(**{**dataclasses.asdict(task.study.items[0]), "text": evil}),
        *task.study.items[1:],
    )
    study = dataclasses.replace(task.study, items=items)
    named = {"<i>odd|name</i>": dataclasses.replace(validations[FLOOR], study=study)}
    page, md = (
        p.read_text(encoding="utf-8")
        for p in write_report(named, out=tmp_path / "e.html")
    )
    assert "<script" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;i&gt;odd|name&lt;/i&gt;" in page
    assert "<script" not in md and "<i>" not in md
    assert r"&lt;script&gt;alert(1)&lt;/script&gt; a\|b \*c\*" in md
    assert r"&lt;i&gt;odd\|name&lt;/i&gt;" in md


def test_bad_report_input(tmp_path, task, validations):
    floor = validations[FLOOR]
    out = tmp_path / "r.html"
    with pytest.raises(OptionError, match=r"report\.htm.*must end in \.html"):
        write_report(validations, out=tmp_path / "report.htm")
    with pytest.raises(OptionError, match="non-empty"):
        write_report({}, out=out)
    for reserved in (HUMAN_ROW, REFERENCE_ROW):
        with pytest.raises(OptionError, match=repr(reserved)):
            write_report({reserved: floor}, out=out)
    with pytest.raises(DataError, match="'b' is a str, not a Validation"):
        write_report({"a": floor, "b": "floor"}, out=out)
    with pytest.raises(DataError, match="differ in alpha"):
        write_report({"a": floor, "b": dataclasses.replace(floor, alpha=0.1)}, out=out)
    with pytest.raises(DataError, match="differ in fingerprint"):
        write_report(
            {"a": floor, "b": dataclasses.replace(floor, fingerprint="x")}, out=out
        )
    other = dataclasses.replace(task.study, subgroups=("gender",))
    with pytest.raises(DataError, match="'a' and 'b' are of different studies"):
        write_report(
            {"a": floor, "b": dataclasses.replace(floor, study=other)}, out=out
        )
    with pytest.raises(OptionError, match="'nope'"):
        write_report(validations, out=out, references=("nope",))


def test_import_simval_stays_free_of_matplotlib_and_figures_skip_pyplot():
    code = (
        "import sys, simval; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'; "
        "assert 'simval.report' not in sys.modules, 'simval.report imported'; "
        "from simval.report.plots import grouped_bars, png; "
        "drawn = grouped_bars(['a'], {'human': [1.0]}, colors={'human': 'k'}, "
        "ylabel='y', title='t'); assert png(drawn)[:4] == b'\\x89PNG'; "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- what was compared: identity, prompts, persona text, title, numbers, Jupyter --------


@pytest.fixture(scope="module")
def described(tmp_path_factory, task, validations):
    """The floor's numbers under three names: a fine-tuned model whose adapter sits
    beside the report (written with an absolute path, as ``simval demo --out /abs``
    does), a served model, and the resampling reference, which has no identity; the
    study with a persona phrase."""
    folder = tmp_path_factory.mktemp("described")
    study = dataclasses.replace(
        task.study, persona_text="a {{ age }}-year-old {{ gender | lower }}"
    )
    lm = UniformLM(
        study=study, cache_dir=folder / "cache", adapter=folder / "runs" / "adapter"
    )
    personas = task.human[[*study.persona, *study.treatment]]
    prompts = example_prompts(lm, personas, study.items)
    served = {
        "model": "llama-3-8b",
        "dtype": "as served",
        "mode": "score",
        "api": "completions at http://10.0.0.5:8000/v1",
    }
    named = {
        RESAMPLING: dataclasses.replace(validations[RESAMPLING], study=study),
        "fine-tuned": dataclasses.replace(
            validations[FLOOR], study=study, identity=identity_of(lm), prompts=prompts
        ),
        "served": dataclasses.replace(
            validations[FLOOR], study=study, identity=served, prompts=prompts
        ),
    }
    out = (folder / "runs" / "report.html").resolve()
    paths = write_report(named, out=out, references=(RESAMPLING,), title="CCES 2016")
    return folder, prompts, [p.read_text(encoding="utf-8") for p in paths]


def test_report_names_each_simulator_by_model_adapter_dtype_mode_and_api(
    described, task
):
    folder, _, (page, md) = described
    rows = table_rows(section(page, "Simulators compared"))
    assert rows["fine-tuned"] == [
        "SmolLM2-135M-Instruct (default)", "adapter", "float32", "score", "–"
    ]  # fmt: skip
    assert rows["served"] == [
        "llama-3-8b", "none", "as served", "score",
        "completions at http://10.0.0.5:8000/v1",
    ]  # fmt: skip
    assert rows[RESAMPLING][0] == html.escape(repr(BootstrapSimulator(task.human)))
    assert rows[RESAMPLING][1:] == ["–"] * 4
    assert "| fine-tuned | SmolLM2-135M-Instruct (default) | adapter | float32 |" in md
    for text in (page, md):
        assert str(folder) not in text and str(folder.resolve()) not in text


def test_the_adapter_is_shown_relative_to_the_report(tmp_path, validations):
    """Beside, below or above the report's folder: a relative path, never the machine's."""
    identity = {"model": "default", "adapter": str(tmp_path / "a" / "adapter"),
                "dtype": "bfloat16", "mode": "score"}  # fmt: skip
    named = {"m": dataclasses.replace(validations[FLOOR], identity=identity)}
    for out, shown in (
        (tmp_path / "a" / "report.html", "adapter"),
        (tmp_path / "b" / "c" / "report.html", "../../a/adapter"),
        (tmp_path / "report.html", "a/adapter"),
    ):
        page = write_html(named, out=out).read_text(encoding="utf-8")
        assert table_rows(section(page, "Simulators compared"))["m"][1] == shown
        assert str(tmp_path) not in page


def test_one_example_prompt_per_item_and_the_persona_text(described, task):
    """Each item's prompt for the first human respondent, once for the two simulators
    shown the same text, exactly as sent (line breaks kept); the persona phrase."""
    _, prompts, (page, md) = described
    assert set(prompts) == set(task.study.item_names)
    assert "a 67-year-old male" in prompts["concern"]
    compared = section(page, "Simulators compared")
    for item, prompt in prompts.items():
        assert f"<strong>{item} (fine-tuned, served)</strong>" in compared
        assert compared.count(f"<pre>{html.escape(prompt)}</pre>") == 1
        assert f"**{item} (fine-tuned, served)**\n\n```text\n{prompt}\n```" in md
    phrase = "a {{ age }}-year-old {{ gender | lower }}"
    assert f"<strong>Persona text</strong>: {html.escape(phrase)}" in section(
        page, "The study"
    )
    assert "**Persona text**: a {{ age }}-year-old {{ gender \\| lower }}" in md


def test_a_title_of_ones_own(described, tmp_path, validations):
    _, _, (page, md) = described
    assert "<title>CCES 2016</title>" in page and "<h1>CCES 2016</h1>" in page
    assert md.startswith("# CCES 2016\n")
    default = write_html(validations, out=tmp_path / "r.html").read_text()
    assert "<title>simval replication report</title>" in default


@pytest.mark.parametrize("command", ["validate", "rectify", "bench"])
def test_the_commands_take_a_title(command):
    from typer.testing import CliRunner

    from simval.cli import app

    shown = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert shown.exit_code == 0 and "--title TEXT" in shown.output


def test_saves_from_before_identities_read_back_empty(validations):
    floor = dataclasses.replace(
        validations[FLOOR], identity={"model": "m", "mode": "score"},
        prompts={"concern": "Question?\nAnswer:"},
    )  # fmt: skip
    again = Validation.from_json(floor.to_json())
    assert again.identity == floor.identity and again.prompts == floor.prompts
    old = json.loads(floor.to_json())
    del old["identity"], old["prompts"]
    again = Validation.from_json(json.dumps(old))
    assert again.identity == {} and again.prompts == {}


def test_one_number_formatter():
    """A float always to its digits (λ 0 reads 0.000 beside 0.370), integers bare."""
    assert [number(x) for x in (0.0, 0.37, -0.0001, 2.0, 1 / 3)] == [
        "0.000", "0.370", "0.000", "2.000", "0.333"
    ]  # fmt: skip
    assert [number(x) for x in (0, np.int64(312), np.nan, None, np.inf)] == [
        "0", "312", "–", "–", "∞"
    ]  # fmt: skip
    assert number(312.0, digits=0) == "312" and number(0.456, digits=2) == "0.46"
    assert number(2.0, digits=None) == "2" and number(2.5, digits=None) == "2.5"


RIGHT = ' style="text-align:right"'


def test_validation_displays_in_jupyter(validations):
    floor = validations[FLOOR]
    shown = floor._repr_html_()
    for row in floor.verdicts.to_dict("records"):
        assert html.escape(verdict_sentence(row, simulator=floor.simulator)) in shown
    table = floor.summary_table
    assert list(table.columns) == [
        "metric", "label", "value", "ci_low", "ci_high", "reference"
    ]  # fmt: skip
    assert list(table["metric"]) == list(floor.headline["metric"])
    assert isinstance(floor.summary(), dict)
    summary = floor.summary()
    for row in table.itertuples(index=False):
        assert row.value == summary[row.metric] or np.isnan(row.value)
        value = f"{number(row.value)} [{number(row.ci_low)}, {number(row.ci_high)}]"
        if np.isnan(row.ci_low):
            value = number(row.value)
        assert f"<td>{html.escape(row.label)}</td><td{RIGHT}>{value}</td>" in shown
    assert shown.count("<tr>") == len(table) + 1


@pytest.fixture(scope="module")
def rectified(tmp_path_factory, task):
    """PPI++ with a simulator that predicts every human alike: λ is 0 for every term
    (its answers carry no information), the case that once printed "0" beside "0.370"."""
    folder = tmp_path_factory.mktemp("rectified")
    lm = UniformLM(study=task.study, cache_dir=folder / "cache")
    return rectify(
        task.study, task.human.iloc[:300], lm, unlabeled=task.human.iloc[300:],
        progress=False,
    )  # fmt: skip


def test_rectified_numbers_read_alike(tmp_path, rectified):
    page, md = (
        p.read_text(encoding="utf-8")
        for p in write_rectified_report({"lm": rectified}, out=tmp_path / "r.html")
    )
    table = page.split("<h3>")[1].split("</table>")[0]  # the first formula's table
    header = re.findall(r"<th>(.*?)</th>", table)
    body = table.split("<tbody>")[1]
    cells = [
        re.findall(r"<td[^>]*>(.*?)</td>", row)[header.index("λ")]
        for row in re.findall(r"<tr>(.*?)</tr>", body)
    ]
    assert cells and all(re.fullmatch(r"-?\d+\.\d{3}", c) for c in cells), cells
    assert "0.000" in cells
    assert "λ: tuned." in html.unescape(page) and "λ: tuned." in md


def test_rectified_names_its_simulator_relative_to_the_page(tmp_path, rectified):
    identity = {"model": "default", "adapter": str(tmp_path / "adapter"),
                "dtype": "float32", "mode": "score"}  # fmt: skip
    known = dataclasses.replace(
        rectified, notes={**rectified.notes, "identity": identity}
    )
    written, _ = write_rectified_report({"lm": known}, out=tmp_path / "out" / "r.html")
    page = written.read_text(encoding="utf-8")
    assert (
        "<strong>lm: model default, adapter ../adapter, dtype float32, mode score"
        "</strong>" in page
    )
    assert str(tmp_path) not in page


def test_rectified_displays_in_jupyter(rectified):
    shown = rectified._repr_html_()
    for line in rectified.lines():
        assert f"<li>{html.escape(line)}</li>" in shown
    assert shown.count("<tr>") == len(rectified.table) + 1
    first = rectified.table.iloc[0]
    assert f"<td>{html.escape(first['term'])}</td>" in shown
    assert number(first["gain"], digits=2) in shown


def test_a_simulator_says_what_it_is(tmp_path, task, tiny_model_dir):
    """A local model folder as its absolute path (a report shows it relative to
    itself), the weights' precision, the mode; a served model by its name, with the
    API and the server's address (``public_url``: no credentials)."""
    from simval.simulators.hf import HFSimulator

    hf = HFSimulator(
        tiny_model_dir, study=task.study, cache_dir=tmp_path, dtype="float32"
    )
    assert identity_of(hf) == {
        "model": str(Path(tiny_model_dir).resolve()),
        "dtype": "float32",
        "mode": "score",
    }
    served = UniformLM(study=task.study, cache_dir=tmp_path, adapter=tmp_path / "lora")
    served.server, served.api, served.model_name = "http://h:8000/v1", "chat", "lora"
    del served.precision
    assert identity_of(served) == {
        "model": "lora",
        "adapter": str((tmp_path / "lora").resolve()),
        "dtype": "as served",
        "mode": "score",
        "api": "chat at http://h:8000/v1",
    }
