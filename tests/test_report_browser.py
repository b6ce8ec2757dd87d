"""The written report and leaderboard pages open in a real browser (headless Chromium):
no console error, every figure decodes and takes up space on the page, the report
leads with the answer: each formula's decision on the first screen of a 1280x800 window,
above the figures and the study's declaration, with the one-line caveat; and every
table and example prompt fits the page's width in that window (the replication report
with its valid-inference section, and the valid-inference page with every human's
estimates beside, its widest table).

Needs the Debian packages chromium and chromium-driver and the Python package
selenium; Selenium Manager is never used (the driver path is given), so nothing is
downloaded. Missing tools fail the test, they never skip it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fake_lm import UniformLM

from simval.rectify import rectify, split_labeled
from simval.report import write_leaderboard, write_rectified_report, write_report
from simval.results import verdict_sentence
from simval.simulators import BootstrapSimulator, MarginalSimulator
from simval.tasks import load_task
from simval.validate import validate

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = (
    "run the README's test command, which installs them "
    "(apt-get install -y chromium chromium-driver; pip install selenium)"
)
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--window-size=1280,800",
)
WINDOW = (1280, 800)
TOPS = """
const top = el => el.getBoundingClientRect().top + window.scrollY;
const text = document.createRange();
text.selectNodeContents(document.querySelector(".callout"));
return {screen: window.innerHeight,
        sentences: Array.from(document.querySelectorAll("#verdict li")).map(top),
        table: top(document.querySelector("#headline-table table")),
        caveat: top(document.querySelector(".callout")),
        caveatLines: text.getClientRects().length,
        figure: top(document.querySelector("img")),
        study: top(document.getElementById("the-study"))};
"""
WIDTHS = """
return Array.from(document.querySelectorAll("table, pre")).map(el => ({
  what: el.tagName + " after " + (el.previousElementSibling || {}).textContent,
  width: el.getBoundingClientRect().width,
  scroll: el.scrollWidth,
  room: el.parentElement.clientWidth}));
"""
IMAGES = """
return Array.from(document.images).map(img => {
  const box = img.getBoundingClientRect();
  return {complete: img.complete, naturalWidth: img.naturalWidth,
          naturalHeight: img.naturalHeight, width: box.width, height: box.height};
});
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium driven through the Debian chromedriver, its console log kept."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: {INSTALL}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"selenium is not installed: {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(*WINDOW)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def validations():
    task = load_task("example")
    sims = {
        "resampling": BootstrapSimulator(task.human),
        "floor": MarginalSimulator(task.human),
    }
    return {
        n: validate(task.study, task.human, s, reps=2, resamples=20, seed=0)
        for n, s in sims.items()
    }


@pytest.fixture(scope="module")
def rectified(tmp_path_factory):
    """A language-model simulator's valid inference on half the example's humans, the
    other half's personas simulated-only; every human's own fit beside."""
    task = load_task("example")
    split = split_labeled(task.study, task.human, frac=0.5, seed=0)
    lm = UniformLM(study=task.study, cache_dir=tmp_path_factory.mktemp("cache"))
    result = rectify(
        task.study, split.labeled, lm, unlabeled=split.unlabeled, progress=False
    )
    return result, split.reference


@pytest.fixture(scope="module")
def pages(tmp_path_factory, validations, rectified) -> dict[str, tuple[Path, int]]:
    """The report (with a valid-inference section), the leaderboard and the
    valid-inference page, with their figure counts (two forest plots per model, a bar
    chart per item, the heatmap, variance, coherence, two heterogeneity; one forest
    plot per model for valid inference)."""
    study = next(iter(validations.values())).study
    folder = tmp_path_factory.mktemp("pages")
    result, reference = rectified
    report, _ = write_report(
        validations, out=folder / "report.html", references=("resampling",),
        rectified={"floor": result},
    )  # fmt: skip
    figures = 3 * len(study.models) + len(study.items) + 5
    _, _, board = write_leaderboard(validations, folder, references=("resampling",))
    inference, _ = write_rectified_report(
        {"floor": result}, out=folder / "rectified.html", reference=reference
    )
    return {
        "report": (report, figures),
        "leaderboard": (board, 0),
        "rectified": (inference, len(study.models)),
    }


@pytest.mark.parametrize("page", ["report", "leaderboard", "rectified"])
def test_page_loads_cleanly_with_every_figure_drawn(browser, pages, page):
    path, figures = pages[page]
    browser.get_log("browser")  # drop anything logged before this page
    browser.get(path.as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    assert browser.find_element("tag name", "h1").text
    errors = [
        e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")
    ]
    assert not errors, f"console errors: {errors}"
    images = browser.execute_script(IMAGES)
    assert len(images) == figures
    for i, img in enumerate(images):
        assert img["complete"], f"figure {i} did not load"
        assert img["naturalWidth"] > 0 and img["naturalHeight"] > 0, (
            f"figure {i} did not decode"
        )
        assert img["width"] > 0 and img["height"] > 0, f"figure {i} takes no space"


def test_verdict_section_shows_every_decision(browser, pages, validations):
    browser.get(pages["report"][0].as_uri())
    verdict = browser.find_element("id", "verdict")
    assert verdict.find_element("tag name", "h2").text == "Verdict"
    shown = verdict.text
    for name, v in validations.items():
        for row in v.verdicts.to_dict("records"):
            sentence = verdict_sentence(row, simulator=name)
            assert row["decision"] in sentence and sentence in shown


def test_decisions_lead_the_first_screen(browser, pages, validations):
    """Opened at the top, the page shows every decision and the headline table's top
    within the window's height, the one-line caveat between them; the figures come
    after them, and the study's declaration after the figures."""
    browser.get(pages["report"][0].as_uri())
    tops = browser.execute_script(TOPS)
    assert 0 < tops["screen"] <= WINDOW[1]
    decisions = sum(len(v.verdicts) for v in validations.values())
    assert len(tops["sentences"]) == decisions > 0
    for top in tops["sentences"]:
        assert top < tops["screen"], f"a decision starts at {top}px, below the window"
    assert max(tops["sentences"]) < tops["caveat"] < tops["table"] < tops["screen"]
    assert tops["table"] < tops["figure"] < tops["study"]
    assert tops["caveatLines"] == 1, "the caveat takes more than one line"


@pytest.mark.parametrize("page", ["report", "rectified"])
def test_every_table_fits_the_page_at_1280_pixels(browser, pages, page):
    """No table or prompt wider than the column it sits in, none scrolling sideways:
    nothing is cut off (the valid-inference table once lost its effective n and gain)."""
    browser.get(pages[page][0].as_uri())
    assert browser.execute_script("return window.innerWidth") == WINDOW[0]
    boxes = browser.execute_script(WIDTHS)
    assert len(boxes) > 3
    for box in boxes:
        assert box["width"] <= box["room"] + 0.5, f"{box['what']} is too wide: {box}"
        assert box["scroll"] <= box["room"] + 0.5, f"{box['what']} overflows: {box}"
