"""The `simval` command: every subcommand end to end on the tiny model, and bad input -> exit 2."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from support import run

from simval.bench import RESAMPLING
from simval.cli import app
from simval.errors import OptionError, check_option
from simval.headline import HEADLINE
from simval.results import HUMAN_ROW, REFERENCE_ROW
from simval.simulators.loading import adapter_record
from simval.simulators.specs import ModelSpec, parse_model_spec
from simval.study import Study
from simval.tasks import load_task, read_human

EXAMPLE = "simval/tasks/example/study.yaml"
RECTIFY = f"rectify {EXAMPLE} --human h.csv --model m"
PLAN = f"plan {EXAMPLE} --human h.csv --model m --unlabeled 9"
COSTS = "--cost-human 5 --cost-simulated 1"


pytestmark = pytest.mark.usefixtures("private_cache")  # conftest.py


@pytest.mark.parametrize(
    "text, spec",
    [
        ("base=default", ModelSpec("base", "default")),
        ("ft=models/smol:adapters/a", ModelSpec("ft", "models/smol", "adapters/a")),
        (
            " x = HuggingFaceTB/SmolLM2-135M ",
            ModelSpec("x", "HuggingFaceTB/SmolLM2-135M"),
        ),
        (
            "big=llama-70b@http://gpu-box:8000/v1",
            ModelSpec("big", "llama-70b", server="http://gpu-box:8000/v1"),
        ),
        (
            "api=org/model@https://u:p@api.example.org/v1",
            ModelSpec("api", "org/model", server="https://u:p@api.example.org/v1"),
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
        (
            f"finetune {EXAMPLE} --human h.csv --model m --pilot-frac 1.5 --out a",
            "--pilot-frac=1.5 is not allowed; choose a number strictly between 0 and 1",
        ),
        (
            f"finetune {EXAMPLE} --human h.csv --model m --pilot-n 0 --out a",
            "--pilot-n",
        ),
        (
            f"finetune {EXAMPLE} --human h.csv --model m --pilot-n 9 --lr 0 --out a",
            "--lr=0.0 is not allowed; choose a positive number",
        ),
        (
            f"finetune {EXAMPLE} --human h.csv --model m --pilot-n 9 --layers 0 --out a",
            "--layers",
        ),
        (
            f"finetune {EXAMPLE} --human h.csv --model m --pilot-n 9 --batch-size 0 --out a",
            "--batch-size",
        ),
        (
            f"finetune {EXAMPLE} --human h.csv --model m --pilot-n 9 --epochs 0 --out a",
            "--epochs",
        ),
        (
            f"finetune {EXAMPLE} --human h.csv --model m --pilot-n 9 --strategy nope --out a",
            "--strategy",
        ),
        (f"{RECTIFY} --out r.html", "one source"),
        (f"{RECTIFY} --unlabeled 9 --personas p.csv --out r.html", "one source"),
        (
            f"{RECTIFY} --labeled-frac 2 --out r.html",
            "--labeled-frac=2.0 is not allowed; choose a number strictly between 0 and 1",
        ),
        (
            f"{RECTIFY} --unlabeled 9 --lam 3 --out r.html",
            "--lam='3' is not allowed; choose tuned, tuned_overall or a number in [0, 1]",
        ),
        (f"{RECTIFY} --unlabeled 9 --out r.csv", ".html"),
        (f"{RECTIFY} --unlabeled 9 --out r.html", "h.csv"),
        (f"{PLAN} --cost-human 5 --cost-simulated 1 --out p.csv", "exactly one of"),
        (
            f"{PLAN} --cost-human 0 --cost-simulated 1 --budget 10 --out p.csv",
            "--cost-human=0.0 is not allowed; choose a positive number",
        ),
        (
            f"{PLAN} --budget 9 --fractions 0,1.5 {COSTS} --out p.csv",
            "--fractions='0,1.5' is not allowed; choose comma-separated numbers",
        ),
        ("task nope --out o", "'nope'"),
        ("task example --seed -1 --out o", "--seed"),
        (f"{RECTIFY} --unlabeled 9 --seed -1 --out r.html", "--seed"),
        ("task disclosure", "--out"),
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


def test_bare_simval_prints_the_help_and_exits_0(capsys):
    """Asking for nothing is not an error: the normal multi-line help, on stdout."""
    code, out, err = run(capsys)
    assert code == 0 and err == ""
    assert out.startswith("Usage: simval [OPTIONS] COMMAND")
    assert out.count("\n") > 10 and "Commands:" in out
    for command in ("task", "validate", "finetune", "bench", "demo"):
        assert f"\n  {command} " in out


def test_version(capsys):
    code, out, err = run(capsys, "--version")
    assert (code, out, err) == (0, f"simval {version('simval')}\n", "")


def test_every_option_has_help_and_a_readable_metavar(capsys):
    """Usage lines name arguments plainly (STUDY, not {study}) and options show what
    they take (FILE.csv, NAME=PATH[:ADAPTER]), never a type such as <list[str]>."""
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        for param in command.params:
            if param.name != "help":
                assert param.help, f"{name} {param.name}"
                # a flag (--dry-run) takes no value to show
                assert param.metavar or param.is_flag, f"{name} {param.name}"
        code, out, _ = run(capsys, name, "--help")
        assert code == 0
        usage, _, rest = out.partition("\n")
        assert usage.startswith(f"Usage: simval {name} [OPTIONS]")
        assert "{" not in usage and "<" not in usage
        assert "<" not in rest.partition("Options:")[2], name


def test_finetune_help_says_how_to_train_as_the_demo(capsys):
    from simval.bench import DEMO_TRAINING

    _, out, _ = run(capsys, "finetune", "--help")
    text = " ".join(out.split())
    assert "exactly one of --pilot-frac and --pilot-n" in text
    flags = [f"--{key.replace('_', '-')}" for key in DEMO_TRAINING]
    assert " ".join(f"{f} {v}" for f, v in zip(flags, DEMO_TRAINING.values())) in text
    options = typer.main.get_command(app).commands["finetune"].params
    assert set(flags) <= {opt for param in options for opt in param.opts}


def test_the_installed_command_and_python_dash_m(tmp_path):
    """The console script and `python -m simval` are the same command, exit codes included."""
    script = shutil.which("simval") or str(Path(sys.executable).with_name("simval"))
    for command in ([script], [sys.executable, "-m", "simval"]):
        ok = subprocess.run(
            [*command, "--help"], check=False, capture_output=True, text=True
        )
        assert ok.returncode == 0 and "demo" in ok.stdout
        bad = subprocess.run(
            [*command, "bench", "nope"], check=False, capture_output=True, text=True
        )
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    bare = subprocess.run([script], check=False, capture_output=True, text=True)
    assert bare.returncode == 0 and bare.stderr == ""
    assert bare.stdout.startswith("Usage: simval [OPTIONS] COMMAND")


@pytest.mark.parametrize("command", ["validate", "finetune", "bench"])
def test_a_csv_with_no_rows_is_refused_naming_it_before_any_model_loads(
    capsys, tmp_path, example_csv, command
):
    empty = tmp_path / "header_only.csv"
    empty.write_text(example_csv.read_text().splitlines()[0] + "\n")
    argv = {
        "validate": [EXAMPLE, "--model", "/no/such/model", "--out", tmp_path / "r.html"],
        "finetune": [EXAMPLE, "--model", "/no/such/model", "--pilot-n", "9", "--out", tmp_path / "a"],
        "bench": ["example", "--model", "m=/no/such/model", "--out", tmp_path / "b"],
    }[command]  # fmt: skip
    code, out, err = run(capsys, command, *argv, "--human", empty)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"{str(empty)!r} has a header but no respondents" in err
    assert "/no/such/model" not in err and "Simulator" not in err


def test_a_bad_code_is_shown_as_the_number_it_is(capsys, tmp_path, example_csv):
    """A numpy scalar in a message reads 7, not np.int64(7)."""
    bad = tmp_path / "bad.csv"
    pd.read_csv(example_csv).assign(concern=7).to_csv(bad, index=False)
    code, _, err = run(
        capsys, "validate", EXAMPLE, "--human", bad, "--model", "/no/such/model",
        "--out", tmp_path / "r.html",
    )  # fmt: skip
    assert code == 2 and "item 'concern' holds value(s) 7 that" in err
    assert "np." not in err
    with pytest.raises(OptionError, match=r"^x=3 is not allowed; choose one of 1, 2$"):
        check_option("x", np.int64(3), (np.int64(1), 2))


def test_missing_persona_note():
    study = load_task("example").study
    people = load_task("example").human.iloc[:20].copy()
    assert study.missing_persona_note(people) is None
    people.loc[people.index[0], "gender"] = None
    assert study.missing_persona_note(people).startswith(
        "1 respondent has missing persona values (gender: 1): "
    )
    people.loc[people.index[[1, 2]], "age"] = np.nan
    people.loc[people.index[3], "concern"] = np.nan  # an item, not a persona field
    assert study.missing_persona_note(people) == (
        "3 respondents have missing persona values (age: 2, gender: 1): their prompts "
        "say 'not stated' for those fields, and each regression drops rows missing a "
        "variable it uses."
    )


def test_task_writes_a_study_and_data_that_finetune_and_validate_take(
    capsys, tmp_path, tiny_model_dir
):
    """The README's path from a fresh clone: simval task, then finetune and validate on
    the files it wrote (here on the tiny model, with every training flag)."""
    folder = tmp_path / "mystudy"
    code, out, err = run(capsys, "task", "disclosure", "--out", folder)
    assert code == 0, err
    study, data = folder / "study.yaml", folder / "data.csv"
    assert f"study: {study}" in out and f"data: {data}" in out
    assert "SIMULATED reference population" in out and "not human data" in out
    task = load_task("disclosure")
    assert Study.from_yaml(study) == task.study
    assert "SIMULATED" in study.read_text()
    pd.testing.assert_frame_equal(read_human(data), task.human)
    code, _, err = run(capsys, "task", "disclosure", "--out", folder)
    assert code == 2 and f"{study} already exists" in err

    adapter = tmp_path / "adapter"
    code, out, err = run(
        capsys, "finetune", study, "--human", data, "--model", tiny_model_dir,
        "--pilot-n", "10", "--epochs", "1", "--layers", "1", "--batch-size", "16",
        "--lr", "1e-3", "--out", adapter,
    )  # fmt: skip
    assert code == 0, err
    record = adapter_record(adapter)
    assert (record["epochs"], record["layers"], record["batch_size"]) == (1, 1, 16)
    assert record["lr"] == 1e-3 and record["pilot_size"] == 10
    report = tmp_path / "report.html"
    code, out, err = run(
        capsys, "validate", study, "--human", data, "--model", tiny_model_dir,
        "--adapter", adapter, "--reps", "2", "--n", "40", "--out", report,
    )  # fmt: skip
    assert code == 0, err
    assert report.is_file() and "Respondents: 40" in report.read_text()


def test_finetune_names_the_layers_flag_beyond_the_model(
    capsys, tmp_path, example_csv, tiny_model_dir
):
    code, _, err = run(
        capsys, "finetune", EXAMPLE, "--human", example_csv, "--model", tiny_model_dir,
        "--pilot-n", "10", "--layers", "3", "--out", tmp_path / "a",
    )  # fmt: skip
    assert code == 2 and "--layers 3 exceeds the model's 2 blocks" in err


def test_validate_says_what_is_done_with_missing_persona_values(
    capsys, tmp_path, example_csv, tiny_model_dir
):
    holes = tmp_path / "holes.csv"
    people = pd.read_csv(example_csv)
    people.loc[[0, 1], "age"] = np.nan
    people.loc[2, "gender"] = np.nan
    people.to_csv(holes, index=False)
    report = tmp_path / "report.html"
    code, out, err = run(
        capsys, "validate", EXAMPLE, "--human", holes, "--model", tiny_model_dir,
        "--reps", "2", "--out", report,
    )  # fmt: skip
    assert code == 0, err
    note = "3 respondents have missing persona values (age: 2, gender: 1)"
    assert note in out and note in report.read_text()
    assert "not stated" in report.with_suffix(".md").read_text()


def test_validate_writes_a_report(capsys, tmp_path, example_csv, tiny_model_dir):
    report = tmp_path / "out" / "report.html"
    code, out, _ = run(
        capsys, "validate", EXAMPLE, "--human", example_csv, "--model", tiny_model_dir,
        "--reps", "2", "--n", "40", "--out", report,
    )  # fmt: skip
    assert code == 0, out
    assert report.is_file() and report.with_suffix(".md").is_file()
    assert_printed_table(out, names=(tiny_model_dir.name, RESAMPLING), formulas=2)
    html = report.read_text()
    assert "Respondents: 40" in html and "resampling reference" in html


def test_rectify_writes_a_report_and_a_table(
    capsys, tmp_path, example_csv, tiny_model_dir
):
    """A 30% labeled subsample, the other humans' personas simulated-only: a sentence
    per formula, every interval beside every human's own fit, a report, a CSV."""
    report = tmp_path / "out" / "rectified.html"
    code, out, err = run(
        capsys, "rectify", EXAMPLE, "--human", example_csv, "--model", tiny_model_dir,
        "--labeled-frac", "0.3", "--out", report,
    )  # fmt: skip
    assert code == 0, err
    table = pd.read_csv(report.with_suffix(".csv"))
    assert set(table["n_human"]) == {36} and set(table["n_unlabeled"]) == {84}
    assert out.count("36 humans plus 84 simulated respondents give") == 2
    assert "all humans" in out and "rectified" in out
    html = report.read_text()
    assert "Valid inference" in html and "all humans" in html
    assert "Labeled: 36 humans drawn at random (--labeled-frac 0.3)" in html
    assert report.with_suffix(".md").is_file()


def test_plan_writes_the_mix_per_term(capsys, tmp_path, example_csv, tiny_model_dir):
    path = tmp_path / "plan.csv"
    code, out, err = run(
        capsys, "plan", EXAMPLE, "--human", example_csv, "--model", tiny_model_dir,
        "--unlabeled", "300", "--cost-human", "10", "--cost-simulated", "0.1",
        "--effective-n", "200", "--fractions", "0,0.5", "--layers", "1", "--out", path,
    )  # fmt: skip
    assert code == 0, err
    table = pd.read_csv(path)
    assert (table["effective_n"] >= 200 - 1e-9).all()
    assert out.count(" simulated respondents reach the precision of ") == len(
        table[table["term"] != "Intercept"]
    )
    tradeoff = pd.read_csv(tmp_path / "plan_finetune.csv")
    assert set(tradeoff["n_finetune"]) == {0, 60}
    for i in (1, 2):
        assert (tmp_path / f"plan_finetune_{i}.png").stat().st_size > 1000


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
    assert "valid inference skipped: 10% of 104 respondents is 10 labeled humans" in out
    for name in ("leaderboard.md", "leaderboard.html", "report.html", "report.md"):
        assert (board_dir / name).is_file()
    assert f"Respondents: {120 - 16}" in (board_dir / "report.html").read_text()


def test_bench_trains_a_pilot_model_as_its_flags_say(capsys, tmp_path, tiny_model_dir):
    """--layers, --epochs, --lr and --batch-size reach a :pilot model's training (the
    demo's settings otherwise, whose 4 blocks the tiny model does not have); a refusal
    names the flag."""
    model = ["--model", f"tuned={tiny_model_dir}:pilot"]
    flags = ["--task", "healthcare_order", "--n", "40", "--reps", "2", *model]
    code, _, err = run(capsys, "bench", *flags, "--out", tmp_path / "a")
    assert code == 2 and "--layers 4 exceeds the model's 2 blocks" in err
    code, _, err = run(
        capsys, "bench", *flags, "--layers", "1", "--epochs", "1", "--lr", "2e-3",
        "--batch-size", "8", "--out", tmp_path / "b",
    )  # fmt: skip
    assert code == 0, err
    record = adapter_record(tmp_path / "b" / "healthcare_order" / "adapter")
    assert (record["layers"], record["epochs"], record["batch_size"]) == (1, 1, 8)
    assert record["lr"] == 2e-3
    code, _, err = run(capsys, "bench", *flags, "--lr", "0", "--out", tmp_path / "c")
    assert code == 2 and "--lr=0.0 is not allowed; choose a positive number" in err


def test_bench_rectifies_with_a_tenth_of_the_respondents(
    capsys, tmp_path, tiny_model_dir
):
    """On 400 respondents: 40 labeled, 360 simulated-only; a sentence per formula, the
    report's valid-inference section and the leaderboard's ess_gain."""
    people = tmp_path / "people.csv"
    load_task("example").human.iloc[:400].to_csv(people, index_label="respondent")
    board_dir = tmp_path / "bench"
    code, out, err = run(
        capsys, "bench", "example", "--human", people, "--reps", "2",
        "--model", f"base={tiny_model_dir}", "--out", board_dir,
    )  # fmt: skip
    assert code == 0, err
    assert out.count("40 humans plus 360 simulated respondents") == 2
    board = pd.read_csv(board_dir / "leaderboard.csv", index_col=0)
    assert "ess_gain" in board.columns and board["ess_gain"].notna().sum() == 1
    board_md = (board_dir / "leaderboard.md").read_text()
    assert "effective-sample-size gain (PPI++)" in board_md
    assert "## Valid inference" in (board_dir / "report.md").read_text()


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
def test_simval_demo_on_the_default_model(capsys, tmp_path, monkeypatch):
    """The README's main job end to end from an empty cache: it reaches a decision
    (the humans' models find effects; the base model's coefficients differ from them),
    fine-tuning moves the default model toward the humans' answer distributions (the
    source paper's headline), every phase reports its progress, and a rerun is served
    from the cache (no training, no scoring)."""
    monkeypatch.chdir(tmp_path)  # --out as a new user types it: a relative folder
    code, out, err = run(capsys, "demo", "--out", "demo")
    assert code == 0, err
    board = pd.read_csv(tmp_path / "demo" / "leaderboard.csv", index_col=0)
    assert list(board.index) == [
        "base", "fine-tuned", RESAMPLING, REFERENCE_ROW, HUMAN_ROW,
    ]  # fmt: skip
    assert board.loc["fine-tuned", "jsd"] < board.loc["base", "jsd"]
    assert board.loc[RESAMPLING, "jsd"] < board.loc["fine-tuned", "jsd"]
    assert "base" in out and "fine-tuned" in out and "report:" in out
    findings = re.search(r"the humans' own models find (\d+) significant", out)
    assert findings and int(findings.group(1)) > 0
    assert re.search(r"^base on concern ~ .*: inconsistent: ", out, re.MULTILINE)
    for phase in ("converting the default model", "fine-tuning on", "scoring concern",
                  "validating base", "writing the report"):  # fmt: skip
        assert phase in err, f"no progress line for {phase!r}"
    html = (tmp_path / "demo" / "report.html").read_text()
    assert "SIMULATED" in out and "not human data" in html
    assert str(tmp_path) not in html
    code, again, err = run(capsys, "demo", "--out", "demo")
    assert code == 0 and "fine-tuning on" not in err and "scoring" not in err
    assert again.splitlines()[:-1] == out.splitlines()[:-1]  # only the time differs


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
            "study.yaml line 2: item 'q': option 'a' has code 'one'",
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


def test_validate_in_generate_mode_reports_the_unparseable_answers(
    capsys, tmp_path, example_csv, tiny_model_dir
):
    """The tiny model's sampled text is mostly not an option: the answers are left
    missing, and the report counts them."""
    report = tmp_path / "report.html"
    code, _, err = run(
        capsys, "validate", EXAMPLE, "--human", example_csv, "--model", tiny_model_dir,
        "--mode", "generate", "--reps", "2", "--n", "40", "--out", report,
    )  # fmt: skip
    assert code == 0, err
    shown = re.search(
        r"unparseable answers \(count\)</td>\s*<td[^>]*>(\d+)<", report.read_text()
    )
    assert shown and int(shown[1]) > 0
