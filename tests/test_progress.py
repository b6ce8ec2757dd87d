"""Progress of long work (simval.progress) and the thread policy (simval.runtime)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from fake_lm import UniformLM

from simval import progress as progress_module
from simval.bench import bench
from simval.errors import OptionError
from simval.finetune import finetune
from simval.progress import Progress, duration, phase, progress
from simval.rectify import rectify
from simval.runtime import thread_count
from simval.tasks import load_task
from simval.validate import validate


def test_a_log_gets_plain_periodic_lines_and_a_summary(capsys, monkeypatch):
    """stderr is not a terminal under pytest, as in a job script or CI."""
    monkeypatch.setattr(progress_module, "LOG_INTERVAL", 0.05)
    for _ in progress(range(6), desc="scoring base", unit="prompts"):
        time.sleep(0.03)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0].startswith("scoring base:   0%")
    assert any("/6 [" in line for line in lines[1:-1]), "no periodic line"
    assert lines[-1].startswith("scoring base: 6 prompts in ")
    assert lines[-1].endswith(" s")


def test_silenced_progress_writes_nothing(capsys):
    for _ in progress(range(3), desc="quiet", enabled=False):
        pass
    with phase("quiet step", enabled=False):
        pass
    assert capsys.readouterr().err == ""


def test_a_silenced_bar_or_phase_silences_everything_inside_it(capsys):
    """What runs inside a silenced bar or phase (a simulator's own bars inside a
    silenced validation, whatever the simulator was told) is silent; after it, bars
    show again."""
    for _ in progress(range(2), desc="outer", enabled=False):
        for _ in progress(range(2), desc="inner"):
            pass
        with phase("inner step"):
            pass
    with phase("outer step", enabled=False), Progress(desc="inner bar", total=1) as bar:
        bar.update(1)
    with Progress(desc="fine-tuning", total=1, enabled=False) as bar:
        for _ in progress(range(1), desc="inner"):
            bar.update(1)
    assert capsys.readouterr().err == ""
    for _ in progress(range(1), desc="shown again"):
        pass
    assert "shown again: 1 it in" in capsys.readouterr().err


@pytest.fixture(scope="module")
def task():
    return load_task("example")


FAST = {"reps": 2, "resamples": 10, "seed": 0}


def test_progress_false_silences_validate_and_rectify(capsys, tmp_path, task):
    """A language-model simulator left at ``progress=None`` shows its scoring bars; the
    call's ``progress=False`` silences them, and everything else, in validate and
    rectify (validate's scoring bars once ignored it)."""
    simulator = UniformLM(study=task.study, cache_dir=tmp_path)
    validate(task.study, task.human, simulator, **FAST)
    shown = capsys.readouterr().err
    assert "default: scoring concern" in shown and "replicates" in shown
    simulator = UniformLM(study=task.study, cache_dir=tmp_path / "again")
    validate(task.study, task.human, simulator, progress=False, **FAST)
    assert capsys.readouterr().err == ""
    rectify(
        task.study, task.human.iloc[:300], simulator,
        unlabeled=task.human.iloc[300:], progress=False,
    )  # fmt: skip
    assert capsys.readouterr().err == ""


def test_progress_false_silences_finetune(capsys, tmp_path, task, tiny_model_dir):
    """Loading the model, then training: not a line (its bar shows by default)."""
    pilot = task.human.iloc[:12]
    for shown, out in ((None, "shown"), (False, "silent")):
        finetune(
            tiny_model_dir, pilot, task.study, tmp_path / out, epochs=1, seed=0,
            progress=shown, cache_dir=tmp_path / "cache",
        )  # fmt: skip
        err = capsys.readouterr().err
        assert ("fine-tuning on" in err) is (shown is None), err


def test_progress_false_silences_bench(capsys, tmp_path, task):
    """bench's pre-scoring of every respondent, then its validations and rectify."""
    simulator = UniformLM(study=task.study, cache_dir=tmp_path)
    bench({"lm": simulator}, task.human, task.study, progress=False, **FAST)
    assert capsys.readouterr().err == ""


def test_a_phase_says_when_it_starts_and_how_long_it_took(capsys):
    with phase("writing the report"):
        pass
    start, done = capsys.readouterr().err.splitlines()
    assert start == "writing the report ..."
    assert done.startswith("writing the report: done in ") and done.endswith(" s")


@pytest.mark.parametrize(
    "seconds, text", [(4.24, "4.2 s"), (63, "1 min 3 s"), (3720, "1 h 2 min")]
)
def test_durations_read_as_people_say_them(seconds, text):
    assert duration(seconds) == text


def run_python(code: str, **env: str) -> str:
    """``code`` in a fresh interpreter (OpenMP reads its settings when torch loads)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    clean.pop("SIMVAL_THREADS", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


POLICY = (
    "import os; from simval.runtime import prepare_torch; prepare_torch(); "
    "import torch; print(os.environ.get('OMP_WAIT_POLICY'), torch.get_num_threads())"
)


def test_threads_sleep_while_they_wait_unless_the_user_chose():
    policy, _ = run_python(POLICY).split()
    assert policy == "PASSIVE"
    policy, _ = run_python(POLICY, OMP_WAIT_POLICY="ACTIVE").split()
    assert policy == "ACTIVE"


def test_simval_threads_sets_torchs_thread_count():
    assert run_python(POLICY, SIMVAL_THREADS="1").split() == ["PASSIVE", "1"]


def test_a_bad_thread_count_names_the_variable(monkeypatch):
    monkeypatch.setenv("SIMVAL_THREADS", "two")
    with pytest.raises(OptionError, match="SIMVAL_THREADS='two'"):
        thread_count()
