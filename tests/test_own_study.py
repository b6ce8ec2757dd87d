"""A researcher's own study end to end, from a Stata file with value labels: ``simval
init`` drafts the study, the researcher uncomments its model, and ``validate`` and
``bench`` (two models, one fine-tuned on a pilot) run on the same file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simval.cli import main
from simval.study import Study

pytestmark = pytest.mark.usefixtures("private_cache")  # conftest.py

LABELS = {
    "gender": {1: "Male", 2: "Female"},
    "party": {1: "Democrat", 2: "Independent", 3: "Republican"},
    "concern": {
        1: "Not at all concerned",
        2: "Slightly concerned",
        3: "Somewhat concerned",
        4: "Very concerned",
        -8: "Don't know",
    },
    "vote": {1: "Yes", 2: "No"},
}


def _survey(path: Path, *, n: int = 240, seed: int = 1) -> pd.DataFrame:
    """A labelled Stata survey: age, gender and party; a 4-point concern item with a
    "Don't know" code (-8) and a yes/no vote that follows concern."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, n)
    gender = rng.integers(1, 3, n)
    party = rng.integers(1, 4, n)
    latent = (
        0.02 * (age - 50) + 0.5 * (gender == 2) + 0.6 * (party == 1)
        - 0.4 * (party == 3) + rng.logistic(size=n)
    )  # fmt: skip
    concern = np.digitize(latent, [-1, 0.3, 1.5]) + 1
    concern[rng.random(n) < 0.05] = -8
    vote = np.where(latent + rng.logistic(size=n) > 0.5, 1, 2)
    df = pd.DataFrame(
        {"respid": np.arange(1, n + 1), "age": age, "gender": gender,
         "party": party, "concern": concern, "vote": vote}
    ).astype({c: "int8" for c in LABELS})  # fmt: skip
    df.to_stata(
        path, write_index=False, value_labels=LABELS,
        variable_labels={"concern": "How concerned are you about climate change?",
                         "vote": "Would you vote for the carbon tax?"},
    )  # fmt: skip
    return df


def _uncomment_models(study: Path) -> None:
    """What the researcher does to the draft: uncomment its model template."""
    lines = study.read_text().splitlines()
    edited = []
    for line in lines:
        body = line.removeprefix("# ")
        if body.startswith(("models:", "  - formula:", "    family:", "    cov:")):
            line = body.split("  #")[0].rstrip() if body.startswith("models") else body
        edited.append(line)
    study.write_text("\n".join(edited) + "\n")


def test_a_labelled_stata_file_through_init_validate_and_bench(
    capsys, tmp_path, tiny_model_dir
):
    data = tmp_path / "survey.dta"
    people = _survey(data)
    draft = tmp_path / "cces"
    assert main(["init", str(data), "--out", str(draft)]) == 0
    study_file = draft / "study.yaml"
    drafted = Study.from_yaml(study_file)
    # the value labels became the options and the missing code, with no transcription
    concern = drafted.item("concern")
    assert dict(concern.options) == {
        label: code for code, label in LABELS["concern"].items() if code > 0
    }
    assert list(concern.missing.values()) == [-8]
    assert set(drafted.persona) == {"age", "gender", "party"}
    _uncomment_models(study_file)
    studied = Study.from_yaml(study_file)
    [model] = studied.models
    outcome, _, terms = model.formula.partition(" ~ ")
    assert outcome in {"concern", "vote"} and terms == "age + C(gender) + C(party)"
    capsys.readouterr()

    report = tmp_path / "report.html"
    assert main(["validate", str(study_file), "--human", str(data), "--model",
                 str(tiny_model_dir), "--reps", "2", "--out", str(report)]) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert tiny_model_dir.name in said  # the simulator is named by its model
    page = report.read_text()
    assert "Not at all concerned" in page  # an example prompt shows the labels
    assert "Democrat" in page or "Republican" in page  # the persona text, not codes
    # the data file named relative to the report: no machine path in a shared file
    assert f"Respondents: {len(people)} from survey.dta." in page
    assert "<title>simval report: cces</title>" in page  # named by the draft's folder
    assert str(tmp_path) not in page

    bench = tmp_path / "bench"
    assert main(["bench", str(study_file), "--human", str(data),
                 "--model", f"base={tiny_model_dir}",
                 "--model", f"tuned={tiny_model_dir}:pilot",
                 "--layers", "1", "--epochs", "1", "--reps", "2",
                 "--out", str(bench)]) == 0  # fmt: skip
    board = pd.read_csv(bench / "leaderboard.csv", index_col=0)
    assert {"base", "tuned"} <= set(board.index)
    # both models compared on the same held-out respondents: all but the 10% pilot
    held_out = len(people) - round(0.1 * len(people))
    shared = (bench / "report.md").read_text()
    assert f"Respondents: {held_out} from ../survey.dta" in shared
    assert str(tmp_path) not in shared
