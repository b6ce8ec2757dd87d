"""The `simval` command: every subcommand end to end on the tiny model, and bad input -> exit 2."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import pytest

from simval.bench import RESAMPLING, ModelSpec, parse_model_spec
from simval.cli import main
from simval.errors import OptionError
from simval.results import HEADLINE, HUMAN_ROW, REFERENCE_ROW
from simval.simulators.loading import adapter_record
from simval.tasks import load_task

EXAMPLE = "simval/tasks/example/study.yaml"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMVAL_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def example_csv(tmp_path):
    path = tmp_path / "people.csv"
    load_task("example").human.iloc[:120].to_csv(path, index_label="respondent")
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    "text, spec",
    [
        ("base=default", ModelSpec("base", "default")),
        ("ft=models/smol:adapters/a", ModelSpec("ft", "models/smol", "adapters/a")),
        (
            " x = HuggingFaceTB/SmolLM2-135M ",
            ModelSpec("x", "HuggingFaceTB/SmolLM2-135M"),
        ),
    ],
)
def test_model_spec(text, spec):
    assert parse_model_spec(text) == spec


@pytest.mark.parametrize("text", ["default", "=default", "name=", "name=:adapter"])
def test_bad_model_spec(text):
    with pytest.raises(OptionError, match="NAME=PATH"):
        parse_model_spec(text)


@pytest.mark.parametrize(
    "command, culprit",
    [
        ("bench nope --model a=default --out o", "'nope'"),
        ("bench disclosure --out o", "--model"),
        ("bench disclosure --model default --out o", "NAME=PATH"),
        ("bench disclosure --model a=x --model a=y --out o", "differ"),
        ("bench disclosure --model a=x:/no/adapter --out o", "/no/adapter"),
        ("bench disclosure --model a=x --human no.csv --out o", "no.csv"),
        ("validate no.yaml --human h.csv --model m --out r.html", "no.yaml"),
        (f"validate {EXAMPLE} --human h.csv --model m --out r.pdf", ".html"),
        (f"validate {EXAMPLE} --human h.csv --model m --out r.html", "h.csv"),
        ("demo --n 3", "--n"),
        (f"finetune {EXAMPLE} --human h.csv --model m --out a", "--pilot-frac"),
        (f"finetune {EXAMPLE} --human h.csv --model m --pilot-n 9 --out a", "h.csv"),
        (
            f"finetune {EXAMPLE} --human h.csv --model m --pilot-frac 0.1 --pilot-n 9 --out a",
            "--pilot-n",
        ),
        ("frobnicate", "frobnicate"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, command, culprit):
    code, out, err = run(capsys, *command.split())
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("simval: error: ")
    assert culprit in err


def test_bad_csv_is_refused_before_any_model_loads(capsys, tmp_path, example_csv):
    broken = tmp_path / "broken.csv"
    pd.read_csv(example_csv).drop(columns="trust").to_csv(broken, index=False)
    code, _, err = run(
        capsys, "validate", EXAMPLE, "--human", broken, "--model", "/no/such/model",
        "--out", tmp_path / "r.html",
    )  # fmt: skip
    assert code == 2 and "trust" in err and "/no/such/model" not in err


def test_the_installed_command_and_python_dash_m(tmp_path):
    """The console script and `python -m simval` are the same command, exit codes included."""
    script = shutil.which("simval") or str(sys.executable).replace("python", "simval")
    for command in ([script], [sys.executable, "-m", "simval"]):
        ok = subprocess.run(
            [*command, "--help"], check=False, capture_output=True, text=True
        )
        assert ok.returncode == 0 and "demo" in ok.stdout
        bad = subprocess.run(
            [*command, "bench", "nope"], check=False, capture_output=True, text=True
        )
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_validate_writes_a_report(capsys, tmp_path, example_csv, tiny_model_dir):
    report = tmp_path / "out" / "report.html"
    code, out, _ = run(
        capsys, "validate", EXAMPLE, "--human", example_csv, "--model", tiny_model_dir,
        "--reps", "2", "--n", "40", "--out", report,
    )  # fmt: skip
    assert code == 0, out
    assert report.is_file() and report.with_suffix(".md").is_file()
    assert_printed_table(out, names=("model", RESAMPLING), formulas=2)
    html = report.read_text()
    assert "Respondents: 40" in html and "resampling reference" in html


def assert_printed_table(out: str, *, names: tuple[str, ...], formulas: int) -> None:
    """The printed table: a row per headline metric (its label, value [CI]), a column per
    simulator and the references; then a decision line per formula and simulator."""
    lines = out.splitlines()
    top = next(i for i, line in enumerate(lines) if REFERENCE_ROW in line)
    for name in (*names, REFERENCE_ROW, HUMAN_ROW):
        assert name in lines[top]
    rows = lines[top + 1 : top + 1 + len(HEADLINE)]
    assert [line[: len(m.label)] for m, line in zip(HEADLINE, rows)] == [
        m.label for m in HEADLINE
    ]
    assert " [" in rows[0] and "]" in rows[0]  # value [CI]
    decisions = [
        line
        for line in lines
        if line.startswith(names) and ": " in line and " on " in line
    ]
    assert len(decisions) == formulas * len(names)
    for line in decisions:
        assert any(
            f": {d}: " in line for d in ("consistent", "inconsistent", "undetermined")
        )


def test_finetune_then_bench_leaves_the_pilot_out(
    capsys, tmp_path, example_csv, tiny_model_dir
):
    adapter = tmp_path / "adapter"
    code, out, err = run(
        capsys, "finetune", EXAMPLE, "--human", example_csv, "--model", tiny_model_dir,
        "--pilot-n", "8", "--strategy", "per_arm", "--epochs", "1", "--out", adapter,
    )  # fmt: skip
    assert code == 0, err
    record = adapter_record(adapter)
    assert record["pilot_size"] == 16 and "trained on 16 respondents" in out
    board_dir = tmp_path / "bench"
    code, out, err = run(
        capsys, "bench", "example", "--human", example_csv, "--reps", "2",
        "--model", f"base={tiny_model_dir}", "--model", f"tuned={tiny_model_dir}:{adapter}",
        "--out", board_dir,
    )  # fmt: skip
    assert code == 0, err
    assert_printed_table(out, names=("base", "tuned", RESAMPLING), formulas=2)
    board = pd.read_csv(board_dir / "leaderboard.csv", index_col=0)
    assert list(board.index) == ["base", "tuned", RESAMPLING, REFERENCE_ROW, HUMAN_ROW]
    assert {"best_in", "tied_in", "jsd", "jsd_ci_low"} <= set(board.columns)
    for name in ("leaderboard.md", "leaderboard.html", "report.html", "report.md"):
        assert (board_dir / name).is_file()
    assert f"Respondents: {120 - 16}" in (board_dir / "report.html").read_text()


def test_demo_on_the_tiny_model(tmp_path, tiny_model_dir):
    """The demo's whole path on the tiny model (2 blocks, so LoRA on the top one)."""
    from simval.bench import demo

    options = {"model": str(tiny_model_dir), "n": 60, "reps": 2, "progress": False}
    result, paths = demo(out_dir=tmp_path / "demo", layers=1, **options)
    assert list(result.leaderboard.index) == [
        "base", "fine-tuned", RESAMPLING, REFERENCE_ROW, HUMAN_ROW,
    ]  # fmt: skip
    assert list(result.validations) == ["base", "fine-tuned", RESAMPLING]
    assert len(result.human) == 60
    assert paths["report"].is_file() and paths["leaderboard_csv"].is_file()
    weights = tmp_path / "demo" / "adapter" / "adapter_model.safetensors"
    trained = weights.stat().st_mtime_ns
    demo(out_dir=tmp_path / "demo", layers=1, **options)
    assert (
        weights.stat().st_mtime_ns == trained
    )  # made the same way: reused, not retrained
    demo(out_dir=tmp_path / "demo", layers=2, **options)
    assert weights.stat().st_mtime_ns != trained  # other settings: trained again


@pytest.mark.slow
def test_simval_demo_on_the_default_model(capsys, tmp_path):
    """The README's main job end to end: fine-tuning moves the default model toward the
    humans' answer distributions (the source paper's headline), and a rerun reuses the
    adapter and the cached scores."""
    code, out, err = run(capsys, "demo", "--out", tmp_path / "demo")
    assert code == 0, err
    board = pd.read_csv(tmp_path / "demo" / "leaderboard.csv", index_col=0)
    assert list(board.index) == [
        "base", "fine-tuned", RESAMPLING, REFERENCE_ROW, HUMAN_ROW,
    ]  # fmt: skip
    assert board.loc["fine-tuned", "jsd"] < board.loc["base", "jsd"]
    assert board.loc[RESAMPLING, "jsd"] < board.loc["fine-tuned", "jsd"]
    assert "base" in out and "fine-tuned" in out and "report:" in out
    html = (tmp_path / "demo" / "report.html").read_text()
    assert "SIMULATED" in out and "not human data" in html


def test_human_findings_counts_the_humans_significant_terms():
    from simval.bench import bench, human_findings
    from simval.regression import fit

    task = load_task("disclosure")
    result = bench({}, task.human, task.study, reps=2, resamples=20)
    expected = 0
    for model in task.study.models:
        table = fit(model.formula, task.human, family=model.family, cov=model.cov).table
        expected += int((table.query("term != 'Intercept'")["p_value"] < 0.05).sum())
    assert human_findings(result) == expected > 0


@pytest.mark.parametrize(
    "text, culprit",
    [
        (
            "items:\n  - name: q\n    text: Why: because\n",
            "study.yaml, line 3, column 14: mapping values are not allowed here",
        ),
        ("items: [{name: q, text: Q\n", "study.yaml, line 2, column 1: expected"),
        ("items:\n  - name: q\n\ttext: Q?\n", "study.yaml, line 3, column 1: found"),
        ("items: 3\n", "study.yaml: items must be a list"),
        (
            "items:\n  - {name: q, text: Q, options: {a: one}}\n",
            "study.yaml: item 'q': option 'a' has code 'one'",
        ),
        (
            "items: [{name: q, text: Q, options: {a: 1}}]\nmodels: [{formula: q ~ center(z)}]\n",
            "undeclared variable(s): z",
        ),
    ],
)
@pytest.mark.parametrize("command", ["validate", "finetune"])
def test_broken_study_yaml_exits_2_with_one_line(
    capsys, tmp_path, example_csv, command, text, culprit
):
    study = tmp_path / "study.yaml"
    study.write_text(text)
    extra = ["--pilot-n", "8"] if command == "finetune" else []
    code, out, err = run(
        capsys, command, study, "--human", example_csv, "--model", "/no/such/model",
        "--out", tmp_path / "r.html", *extra,
    )  # fmt: skip
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("simval: error: ")
    assert culprit in err and "/no/such/model" not in err


@pytest.mark.parametrize(
    "name, content, culprit",
    [
        ("missing.yaml", None, "missing.yaml: cannot read the study file"),
        ("binary.yaml", b"\xff\xfe items", "binary.yaml: not UTF-8 text"),
    ],
)
def test_unreadable_study_file_exits_2_naming_it(
    capsys, tmp_path, name, content, culprit
):
    study = tmp_path / name
    if content is not None:
        study.write_bytes(content)
    code, _, err = run(
        capsys, "validate", study, "--human", "h.csv", "--model", "m",
        "--out", tmp_path / "r.html",
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and culprit in err


def test_broken_study_yaml_via_the_installed_command(tmp_path):
    """The user's report: a broken YAML gave a traceback and exit 1 from the real command."""
    study = tmp_path / "study.yaml"
    study.write_text("items:\n  - name: q\n    options: [a, b\n")
    done = subprocess.run(
        [sys.executable, "-m", "simval", "validate", str(study), "--human", "h.csv",
         "--model", "m", "--out", str(tmp_path / "r.html")],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"simval: error: {study}, line 4, column 1: ")
