"""Benchmarking on a researcher's own study: ``simval bench STUDY.yaml --human DATA``
and ``bench_study`` rank models on the same held-out respondents (every pilot left
out, for every model), a missing --human is refused in one line, the humans' own
models are fitted before any simulator is built, and ``simval validate`` names its
simulator by its model and adapter."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from simval import FunctionSimulator
from simval.bench import RESAMPLING, bench_study, own_task
from simval.cli import main
from simval.cli_flags import ModelFlags, simulator_name, study_path
from simval.finetune import pilot
from simval.results import HUMAN_ROW, REFERENCE_ROW
from simval.simulators.loading import RECORD, adapter_record
from simval.simulators.specs import BACKENDS, Backend, parse_model_spec

pytestmark = pytest.mark.usefixtures("private_cache")  # conftest.py

STUDY = """\
# A researcher's own observational study (no treatment), not a built-in task.
items:
  - name: concern
    text: How concerned are you about the state of the economy?
    role: belief
    options: {Not at all: 1, A little: 2, Somewhat: 3, Very: 4, Extremely: 5}
  - name: vote
    text: Did you vote in the last election?
    role: action
    options: {"No": 0, "Yes": 1}
persona: [age, gender]
models:
  - formula: vote ~ concern + age
    family: logit
  - formula: concern ~ C(gender) + age
    family: ols
"""


def answers(personas: pd.DataFrame, *, seed) -> pd.DataFrame:
    """The known process the humans are drawn from: concern rises with age and is
    higher for women; voting rises with concern and age."""
    rng = np.random.default_rng(seed)
    female = (personas["gender"] == "Female").to_numpy()
    age = personas["age"].to_numpy()
    latent = 2.6 + 0.02 * (age - 50) + 0.5 * female + rng.normal(0, 1, len(age))
    concern = np.clip(np.round(latent), 1, 5).astype(int)
    p = 1 / (1 + np.exp(-(-2 + 0.5 * concern + 0.02 * (age - 50))))
    vote = (rng.uniform(size=len(age)) < p).astype(int)
    return pd.DataFrame({"concern": concern, "vote": vote}, index=personas.index)


def people(n: int = 200, *, seed: int = 0) -> pd.DataFrame:
    """``n`` respondents with string ids (``r0000``...), their personas and answers."""
    rng = np.random.default_rng(seed)
    personas = pd.DataFrame(
        {"age": rng.integers(18, 81, n), "gender": rng.choice(["Female", "Male"], n)},
        index=pd.Index([f"r{i:04d}" for i in range(n)], name="respondent"),
    )
    return personas.join(answers(personas, seed=seed + 1))


@pytest.fixture
def own(tmp_path):
    """A study file and its respondents' CSV, as a researcher writes them."""
    study, data = tmp_path / "vote_study.yaml", tmp_path / "data.csv"
    study.write_text(STUDY, encoding="utf-8")
    people().to_csv(data)
    return study, data


@pytest.fixture
def known_backend(monkeypatch):
    """Specs whose model is ``truth`` (the humans' own process, seeded) or ``flat``
    (every answer equally likely) build FunctionSimulators: no language model."""

    def build(spec, **_):
        if spec.model == "truth":
            return FunctionSimulator(answers)

        def flat(personas, seed):
            rng = np.random.default_rng(seed)
            size = len(personas)
            return pd.DataFrame(
                {"concern": rng.integers(1, 6, size), "vote": rng.integers(0, 2, size)},
                index=personas.index,
            )

        return FunctionSimulator(flat)

    known = Backend("known", serves=lambda s: s.model in ("truth", "flat"), build=build)
    monkeypatch.setitem(BACKENDS, "known", known)


def test_bench_study_compares_every_model_on_the_same_held_out_respondents(
    tmp_path, own, known_backend
):
    """Two models, one with an adapter trained on 20 respondents: both are compared on
    the same 180 others (the pilot left out for both), paired, on every axis."""
    study, data = own
    humans = people()
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    trained = list(humans.index[::10])  # 20 respondents
    (adapter / RECORD).write_text(json.dumps({"pilot_index": trained}))
    result, paths = bench_study(
        study, data, ["truth=truth:" + str(adapter), "flat=flat"],
        out_dir=tmp_path / "bench", reps=3, progress=False,
    )  # fmt: skip
    held_out = [i for i in humans.index if i not in trained]
    assert list(result.human.index) == held_out and len(held_out) == 180
    assert list(result.validations) == ["truth", "flat", RESAMPLING]
    for validation in result.validations.values():
        assert validation.n_human == 180 and validation.seed == 0
    board = pd.read_csv(paths["leaderboard_csv"], index_col=0)
    assert list(board.index) == ["truth", "flat", RESAMPLING, REFERENCE_ROW, HUMAN_ROW]
    # the process the humans come from is closer to them than uniform answers
    assert board.at["truth", "jsd"] < board.at["flat", "jsd"]
    assert result.rectified == {}  # 10% of 180 is 18 labeled humans, fewer than 30
    assert "fewer than 30" in result.inference_note
    report = paths["report"].read_text(encoding="utf-8")
    assert "simval benchmark: vote_study" in report
    # the data file relative to the report's folder: no machine path in a shared page
    shown = os.path.relpath(data, paths["report"].parent)
    assert f"Respondents: 180 from {shown}." in report and str(data) not in report


def test_own_task_names_the_study_by_its_file(own):
    study, data = own
    task = own_task(study, data)
    assert (task.name, task.source, task.simulated) == ("vote_study", str(data), False)
    assert len(task.human) == 200 and task.human.index[0] == "r0000"


def test_bench_a_study_yaml_through_the_command(capsys, tmp_path, own, tiny_model_dir):
    """simval bench STUDY.yaml --human DATA with a base model and one fine-tuned on a
    random 10% pilot: the pilot is the one ``pilot`` draws with the seed, and both
    models are compared on the other 180 respondents, in the leaderboard and report."""
    study, data = own
    out = tmp_path / "bench"
    code = main(
        ["bench", str(study), "--human", str(data), "--model", f"base={tiny_model_dir}",
         "--model", f"tuned={tiny_model_dir}:pilot", "--layers", "1", "--epochs", "1",
         "--reps", "2", "--out", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    record = adapter_record(out / "adapter")
    drawn, held_out = pilot(people(), frac=0.1, seed=0)
    assert list(record["pilot_index"]) == list(drawn.index) and len(held_out) == 180
    board = pd.read_csv(out / "leaderboard.csv", index_col=0)
    assert list(board.index) == ["base", "tuned", RESAMPLING, REFERENCE_ROW, HUMAN_ROW]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "Respondents: 180 from" in report
    assert "tuned: LoRA on a random 10% pilot (20 respondents" in report
    assert "base" in printed.out and "tuned" in printed.out


@pytest.mark.parametrize(
    "command, culprit",
    [
        ("bench {study} --model a=default --out o", "needs --human FILE"),
        ("bench {folder}/nope.yaml --human {data} --model a=x --out o", "nope.yaml"),
        ("bench {study} --task beps --human {data} --model a=x --out o", "not both"),
        ("bench {study} --human {data} --model a=x:/no/adapter --out o", "/no/adapter"),
    ],
)
def test_bad_study_bench_input_exits_2_with_one_line(capsys, own, command, culprit):
    study, data = own
    filled = command.format(study=study, data=data, folder=study.parent)
    code = main(filled.split())
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and culprit in err


@pytest.mark.parametrize("command", ["bench", "validate"])
def test_the_humans_models_are_fitted_before_any_simulator_is_built(
    capsys, tmp_path, own, command
):
    """A logit the humans' answers separate is reported, naming the data and the
    sample, while the model (which does not exist) is never loaded."""
    study, _ = own
    separated = tmp_path / "separated.csv"
    humans = people()
    humans.assign(vote=(humans["concern"] >= 3).astype(int)).to_csv(separated)
    model = ["--model", "a=/no/such/model" if command == "bench" else "/no/such/model"]
    out = tmp_path / ("o" if command == "bench" else "r.html")
    code = main(
        [command, str(study), "--human", str(separated), *model, "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"{separated}, on the 200 respondents compared: logit model of 'vote'" in err
    assert "separation" in err and "/no/such/model" not in err


def test_study_path_tells_a_study_file_from_a_task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "disclosure").mkdir()  # as simval task disclosure --out disclosure
    (tmp_path / "study").write_text(STUDY)
    assert study_path("disclosure") is None and study_path("nope") is None
    assert str(study_path("mine.yaml")) == "mine.yaml"
    assert str(study_path("a/b.YML")) == "a/b.YML"
    assert str(study_path("study")) == "study"


@pytest.mark.parametrize(
    "text, name",
    [
        ("m=default", "SmolLM2-135M-Instruct"),
        ("m=default:adapters/pilot10", "SmolLM2-135M-Instruct + pilot10"),
        ("m=HuggingFaceTB/SmolLM2-135M", "SmolLM2-135M"),
        ("m=/models/smol/:/home/me/adapters/a1/", "smol + a1"),
        ("m=llama-70b@https://user:SECRET@gpu-box:8000/v1", "llama-70b"),
    ],
)
def test_simulator_name_is_the_model_and_adapter(text, name):
    assert simulator_name(parse_model_spec(text)) == name


def test_validate_names_its_simulator_by_model_and_adapter(
    capsys, tmp_path, own, tiny_model_dir
):
    """The leaderboard, the printed table and the report name the simulator by the
    tiny model's folder and the adapter's, never "model" nor a machine path."""
    study, data = own
    adapter = tmp_path / "pilot10"
    code = main(
        ["finetune", str(study), "--human", str(data), "--model", str(tiny_model_dir),
         "--pilot-n", "10", "--epochs", "1", "--layers", "1", "--out", str(adapter)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    name = f"{tiny_model_dir.name} + pilot10"
    assert ModelFlags(str(tiny_model_dir), adapter).spec().name == name
    report = tmp_path / "report.html"
    code = main(
        ["validate", str(study), "--human", str(data), "--model", str(tiny_model_dir),
         "--adapter", str(adapter), "--reps", "2", "--n", "40", "--out", str(report)]
    )  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    header = next(line for line in printed.out.splitlines() if REFERENCE_ROW in line)
    assert name in header and " model " not in header
    markdown = report.with_suffix(".md").read_text(encoding="utf-8")
    shown = name.replace("_", "\\_")  # Markdown escapes the underscores
    assert f"\n| {shown} |" in markdown and "\n| model |" not in markdown
    assert f"- {shown} on vote ~ concern + age: ".replace("~", "\\~") in markdown
