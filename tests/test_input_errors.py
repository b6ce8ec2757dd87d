"""Bad study files and survey data: one line that names the culprit and the fix, raised
before any simulator is built or asked (library) and as exit 2 (command line)."""

from __future__ import annotations

import importlib
import re

import numpy as np
import pandas as pd
import pytest

from simval import Coherence, DataError, Item, Model, Study, StudyError, validate
from simval.cli import main
from simval.cli_flags import ModelFlags
from simval.comparison import check_human_models
from simval.errors import EstimationError, FormulaError, SimulatorError
from simval.simulators.prompts import MAX_PROMPT_CHARS, PromptRenderer, as_template
from simval.simulators.reference import FunctionSimulator
from simval.study import MAX_LABEL_CHARS, MAX_TEXT_CHARS

CONCERN = {"Not at all": 1, "A little": 2, "Somewhat": 3, "Very": 4}

STUDY_YAML = """\
items:
  - name: concern
    text: How concerned are you?
    role: belief
    options: {Not at all: 1, A little: 2, Somewhat: 3, Very: 4}
  - name: vote
    text: Will you vote?
    role: action
    options: {"No": 0, "Yes": 1}
persona: [age, gender]
models:
  - formula: vote ~ concern + age + C(gender)
    family: logit
"""


def make_study(**overrides) -> Study:
    fields = {
        "items": (
            Item("concern", "How concerned are you?", CONCERN, role="belief"),
            Item("vote", "Will you vote?", {"No": 0, "Yes": 1}, role="action"),
        ),
        "persona": ("age", "gender"),
        "models": (Model("vote ~ concern + age + C(gender)", family="logit"),),
    }
    return Study(**{**fields, **overrides})


def humans(n: int = 80, *, seed: int = 0) -> pd.DataFrame:
    """Respondents whose logit is estimable: vote depends on concern, with noise."""
    rng = np.random.default_rng(seed)
    concern = rng.integers(1, 5, n)
    vote = (rng.random(n) < 1 / (1 + np.exp(-(concern - 2.5)))).astype(int)
    return pd.DataFrame(
        {
            "concern": concern,
            "vote": vote,
            "age": rng.integers(18, 80, n),
            "gender": rng.choice(["female", "male"], n),
        }
    )


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- did you mean, and the wrong separator ------------------------------------------


def test_near_miss_column_gets_did_you_mean():
    data = humans().rename(columns={"age": "Age"})
    with pytest.raises(DataError) as info:
        make_study().check_data(data, what="data.csv")
    assert one_line(info) == (
        "data.csv lacks the study's column(s): age (did you mean 'Age'?)"
    )


def test_column_with_no_near_miss_gets_no_guess():
    data = humans().drop(columns="gender")
    with pytest.raises(DataError) as info:
        make_study().check_data(data, what="data.csv")
    assert one_line(info) == "data.csv lacks the study's column(s): gender"


def test_single_column_with_semicolons_says_wrong_separator():
    data = pd.DataFrame({"concern;vote;age;gender": ["1;0;30;female"]})
    with pytest.raises(DataError) as info:
        make_study().check_data(data, what="data.csv")
    message = one_line(info)
    assert "wrong separator" in message and "sep=';'" in message
    assert "'concern;vote;age;gender'" in message


@pytest.mark.parametrize(
    ("overrides", "culprit"),
    [
        (
            {"models": (Model("vote ~ concen + Age", family="logit"),)},
            (
                "undeclared variable(s): Age (did you mean 'age'?), concen (did you "
                "mean 'concern'?)"
            ),
        ),
        (
            {"subgroups": ("Gender",)},
            (
                "subgroup 'Gender' is not a persona or treatment column (did you mean "
                "'gender'?)"
            ),
        ),
        (
            {"coherence": (Coherence("concrn", "vote", "concern > 3 and vote == 0"),)},
            "coherence belief 'concrn' is not one of the items (did you mean 'concern'?)",
        ),
        (
            {
                "coherence": (
                    Coherence("concern", "vote", "concerns > 3 and vote == 0"),
                )
            },
            "names undeclared variable(s): concerns (did you mean 'concern'?)",
        ),
        (
            {"persona_text": "{{ agee }}-year-old"},
            "persona_text names agee (did you mean 'age'?)",
        ),
    ],
)
def test_unknown_names_in_the_study_get_did_you_mean(overrides, culprit):
    with pytest.raises(StudyError) as info:
        make_study(**overrides)
    assert culprit in one_line(info)


def test_unknown_item_gets_did_you_mean():
    with pytest.raises(StudyError, match="no item 'Vote' \\(did you mean 'vote'\\?\\)"):
        make_study().item("Vote")


# --- answers given as labels -----------------------------------------------------------


def test_labels_are_mapped_to_codes_with_a_note():
    data = humans(8)
    labels = {code: label for label, code in CONCERN.items()}
    data["concern"] = [f" {labels[c].upper()} " for c in data["concern"]]
    data["vote"] = data["vote"].map({0: "no", 1: "Yes"})
    data.loc[3, "vote"] = None  # a missing answer stays missing
    coded = make_study().coded(data, what="data.csv")
    assert coded.mapped == ("concern", "vote")
    assert coded.note == (
        "data.csv: answers given as option labels were mapped to their codes in "
        "column(s) concern, vote."
    )
    expected = humans(8)
    assert coded.data["concern"].tolist() == expected["concern"].tolist()
    assert coded.data["vote"].iloc[[0, 1, 2, 4]].tolist() == (
        expected["vote"].iloc[[0, 1, 2, 4]].tolist()
    )
    assert np.isnan(coded.data["vote"].iloc[3])
    make_study().check_data(coded.data)  # the coded data passes


def test_codes_are_left_alone():
    data = humans(8)
    coded = make_study().coded(data)
    assert coded.mapped == () and coded.note is None and coded.data is data


def test_some_values_not_labels_are_refused_with_the_mapping():
    data = humans(8).astype({"concern": object})
    data.loc[0, "concern"] = "Very"
    data.loc[1, "concern"] = "Verry"
    study = make_study()
    assert study.coded(data).mapped == ()  # not every value is a label or a code
    with pytest.raises(DataError) as info:
        study.check_data(data, what="data.csv")
    assert one_line(info) == (
        "data.csv: item 'concern' holds value(s) 'Verry' that are neither its option "
        "codes nor its labels; expected 'Not at all' = 1, 'A little' = 2, "
        "'Somewhat' = 3, 'Very' = 4"
    )


def test_labels_left_uncoded_name_the_fix():
    data = humans(8).astype({"vote": object})
    data["vote"] = data["vote"].map({0: "No", 1: "Yes"})
    with pytest.raises(DataError) as info:
        make_study().check_data(data, what="data.csv")
    assert "holds option labels" in one_line(info)
    assert "Study.coded(df)" in str(info.value) and "'No' = 0, 'Yes' = 1" in str(
        info.value
    )


# --- undeclared codes point to missing: ------------------------------------------------


def test_undeclared_code_points_to_missing():
    data = humans(8)
    data.loc[2, "concern"] = 8
    with pytest.raises(DataError) as info:
        make_study().check_data(data, what="data.csv")
    assert one_line(info) == (
        "data.csv: item 'concern' holds value(s) 8 that are not among its option "
        "codes [1, 2, 3, 4]; if 8 means no answer, declare it: missing: [8]"
    )


def test_undeclared_code_beside_declared_missing_extends_them():
    study = make_study(
        items=(
            Item("concern", "How concerned?", CONCERN, missing={"Don't know": 8}),
            Item("vote", "Will you vote?", {"No": 0, "Yes": 1}),
        )
    )
    data = humans(8)
    data.loc[[2, 3], "concern"] = [8, 9]
    with pytest.raises(DataError) as info:
        study.check_data(data)
    assert one_line(info).endswith(
        'if 9 means no answer, declare it: missing: {"Don\'t know": 8, "9": 9}'
    )


def test_missing_codes_can_be_listed_and_round_trip(tmp_path):
    item = Item("vote", "Will you vote?", {"No": 0, "Yes": 1}, missing=[8, 9])
    assert item.missing == {"8": 8, "9": 9}
    study = make_study(items=(make_study().items[0], item))
    study.to_yaml(tmp_path / "study.yaml")
    assert Study.from_yaml(tmp_path / "study.yaml") == study
    data = humans(8)
    data.loc[0, "vote"] = 9
    study.check_data(data)
    assert np.isnan(study.blank_missing(data).loc[0, "vote"])


def test_number_item_off_scale_whole_value_points_to_missing():
    study = Study(items=(Item("age", "Age?", number={"min": 18, "max": 99}),))
    with pytest.raises(DataError) as info:
        study.check_data(pd.DataFrame({"age": [20, 999]}), what="d.csv")
    assert one_line(info) == (
        "d.csv: item 'age' holds value(s) 999 that are not a number from 18 to 99; "
        "if 999 means no answer, declare it: missing: [999]"
    )


# --- study.yaml lines --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "line", "label"),
    [
        ("    options: {Clinton, Hillary: 1, Trump: 2}\n", 5, "Clinton"),
        (
            "    options:\n      Trump: 2\n      Hillary Clinton:\n",
            7,
            "Hillary Clinton",
        ),
    ],
)
def test_option_without_code_names_the_file_and_line(tmp_path, options, line, label):
    path = tmp_path / "study.yaml"
    path.write_text(
        "items:\n  - name: vote\n    text: Who?\n    role: action\n" + options
    )
    with pytest.raises(StudyError) as info:
        Study.from_yaml(path)
    assert one_line(info) == (
        f"{path} line {line}: option {label!r} of item 'vote' has no code (write it "
        "as 'label: code'); quote labels that contain commas or colons"
    )


def test_item_error_names_its_line(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(
        "items:\n  - name: q\n    text: Q?\n    options: {a: 1}\n"
        "  - name: r\n    text: R?\n    options: {a: one}\n"
    )
    with pytest.raises(StudyError) as info:
        Study.from_yaml(path)
    assert one_line(info).startswith(f"{path} line 5: item 'r': option 'a'")


# --- length limits ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "culprit"),
    [
        (
            lambda: Item("q", "Q?", {"a" * (MAX_LABEL_CHARS + 1): 1}),
            (
                f"item 'q': option label 'aaa.*is {MAX_LABEL_CHARS + 1:,} characters; "
                f"the limit is {MAX_LABEL_CHARS}"
            ),
        ),
        (
            lambda: Item("q", "Q?", {"a": 1}, missing={"b" * 10_000: 8}),
            "item 'q': option label 'bbb.*is 10,000 characters",
        ),
        (
            lambda: Item("q", "x" * (MAX_TEXT_CHARS + 1), {"a": 1}),
            f"item 'q': its text 'xxx.*the limit is {MAX_TEXT_CHARS:,}",
        ),
        (
            lambda: make_study(
                persona=("age",),
                treatment="arm",
                models=(),
                vignettes={"a": "v" * (MAX_TEXT_CHARS + 1)},
            ),
            "vignette 'a': its text 'vvv",
        ),
        (
            lambda: make_study(persona_text="{{ age }}" + "p" * MAX_TEXT_CHARS),
            "persona_text '\\{\\{ age",
        ),
    ],
)
def test_long_labels_and_texts_are_refused(make, culprit):
    with pytest.raises(StudyError, match=culprit) as info:
        make()
    one_line(info)


def test_long_persona_value_is_refused_with_its_row():
    data = humans(8).astype({"gender": object})
    data.loc[4, "gender"] = "g" * (MAX_TEXT_CHARS + 1)
    with pytest.raises(DataError) as info:
        make_study().check_data(data, what="data.csv")
    assert one_line(info).startswith("data.csv: column 'gender', row 4: its value 'ggg")


class _PlainTokenizer:
    chat_template = None


def test_long_prompt_is_refused_when_rendered():
    study = make_study(
        persona=("a", "b", "c", "d", "e"),
        models=(),
        persona_text="{{ a }} {{ b }} {{ c }} {{ d }} {{ e }}",
    )
    renderer = PromptRenderer(
        study=study, template=as_template(None), tokenizer=_PlainTokenizer()
    )
    short = dict.fromkeys("abcde", "x")
    assert "Will you vote?" in renderer(short, study.item("vote"))
    long = dict.fromkeys("abcde", "y" * 4_500)  # each value within MAX_TEXT_CHARS
    with pytest.raises(StudyError) as info:
        renderer(long, study.item("vote"))
    assert f"the limit is {MAX_PROMPT_CHARS:,}" in one_line(info)
    assert "item 'vote'" in str(info.value)


# --- the humans' own models, checked before any simulator is asked ----------------------


def _all_missing(column):
    def change(data):
        data[column] = np.nan
        return data

    return change


def _forty(data):
    data["age"] = data["age"].astype(object)
    data.loc[5, "age"] = "forty"
    return data


def _one_gender(data):
    data["gender"] = "female"
    return data


def _separated(data):
    data["vote"] = (data["concern"] >= 3).astype(int)
    return data.head(20)


BAD_DATA = [
    (_all_missing("concern"), DataError, "item 'concern' is missing on every row"),
    (_all_missing("age"), DataError, "column 'age' is missing on every row"),
    (_all_missing("gender"), DataError, "column 'gender' is missing on every row"),
    (
        _forty,
        DataError,
        (
            "column 'age' has non-numeric value 'forty' (row 5); formula 'vote ~ "
            "concern + age + C(gender)' uses it as a number"
        ),
    ),
    (
        _one_gender,
        FormulaError,
        (
            "C(gender) has one level ('female') in the human data: a formula term "
            "needs two; drop it or use more respondents"
        ),
    ),
    (_separated, EstimationError, "separation"),
]


@pytest.mark.parametrize(("change", "kind", "culprit"), BAD_DATA)
def test_bad_data_is_refused_before_the_simulator_is_asked(change, kind, culprit):
    asked = []

    def answer(personas):
        asked.append(len(personas))
        return pd.DataFrame({"concern": 1, "vote": 0}, index=personas.index)

    data = change(humans())
    with pytest.raises(kind) as info:
        check_human_models(make_study(), data)
    assert culprit in one_line(info)
    with pytest.raises(kind, match="^" + re.escape(str(info.value))):
        validate(make_study(), data, FunctionSimulator(answer), reps=2, resamples=0)
    assert asked == []


def test_an_item_no_formula_uses_with_no_answer_is_refused():
    """An item with nothing to compare (every value blank or a declared missing code)
    is refused even when no formula reads it (a new user's run passed silently)."""
    study = make_study(models=(Model("vote ~ age", family="logit"),))
    study = Study(
        items=(
            Item("concern", "How concerned are you?", CONCERN, role="belief",
                 missing={"Don't know": 8}),
            study.items[1],
        ),
        persona=study.persona, models=study.models,
    )  # fmt: skip
    data = humans().assign(concern=[8, np.nan] * 40)
    with pytest.raises(DataError) as info:
        study.check_data(data, what="data.csv")
    assert one_line(info).startswith(
        "data.csv: item 'concern' is missing on every row (each value blank or a "
        "declared missing code)"
    )
    with pytest.raises(DataError, match="item 'concern' is missing on every row"):
        validate(study, data, FunctionSimulator(lambda p: None), reps=2, resamples=0)


def test_good_data_passes_the_checks():
    check_human_models(make_study(), humans())


def test_constant_number_term_is_named():
    data = humans()
    data["age"] = 30
    with pytest.raises(FormulaError, match="^age has one value \\(30\\) in the human"):
        check_human_models(make_study(), data)


# --- the command line: exit 2, one line, no model built ----------------------------------


@pytest.fixture
def built(monkeypatch):
    """Records every model a command would load: a simulator built (validate, rectify,
    plan, bench) or a model fine-tuned (finetune)."""
    calls = []

    def record(*args, **kwargs):
        calls.append(args)
        raise AssertionError("a command loaded its model despite bad data")

    monkeypatch.setattr(ModelFlags, "simulator", record)
    monkeypatch.setattr("simval.bench.build_simulator", record)
    monkeypatch.setattr(importlib.import_module("simval.finetune"), "finetune", record)
    return calls


COMMANDS = {
    "validate": ["--model", "default", "--out", "{tmp}/r.html"],
    "finetune": ["--model", "default", "--pilot-n", "10", "--out", "{tmp}/adapter"],
    "rectify": ["--model", "default", "--labeled-frac", "0.5", "--out", "{tmp}/r.html"],
    "plan": [
        "--model", "default", "--cost-human", "1", "--cost-simulated", "0.01",
        "--effective-n", "100", "--personas", "{tmp}/data.csv", "--out", "{tmp}/p.csv",
    ],
    "bench": ["--model", "a=default", "--out", "{tmp}/bench"],
}  # fmt: skip


def cli(
    capsys,
    tmp_path,
    data: pd.DataFrame,
    study_text: str = STUDY_YAML,
    *extra: str,
    command: str = "validate",
):
    study, human = tmp_path / "study.yaml", tmp_path / "data.csv"
    study.write_text(study_text)
    data.to_csv(human, index=False)
    flags = [flag.format(tmp=tmp_path) for flag in COMMANDS[command]]
    code = main([command, str(study), "--human", str(human), *flags, *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def _labels_and_bad_code(data):
    data = data.astype({"vote": object})
    data["vote"] = data["vote"].map({0: "No", 1: "Yes"})
    data.loc[0, "vote"] = "Maybe"
    return data


CLI_CASES = [
    (lambda d: d.rename(columns={"age": "Age"}), "age (did you mean 'Age'?)"),
    (lambda d: d.assign(concern=d["concern"].replace(4, 8)), "missing: [8]"),
    (_labels_and_bad_code, "'Maybe' that are neither its option codes nor its labels"),
    *[(change, culprit) for change, _, culprit in BAD_DATA],
]


@pytest.mark.parametrize(("change", "culprit"), CLI_CASES)
def test_cli_bad_data_exits_2_with_one_line_before_the_model(
    capsys, tmp_path, built, change, culprit
):
    extra = ("--n", "20") if change is _separated else ()
    code, _, err = cli(capsys, tmp_path, change(humans()), STUDY_YAML, *extra)
    assert code == 2 and err.count("\n") == 1 and err.startswith("simval: error: ")
    assert culprit in err
    assert built == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("change", "culprit"),
    [
        (_forty, "column 'age' has non-numeric value 'forty' (row 5)"),
        (_one_gender, "C(gender) has one level ('female') in the human data"),
    ],
)
def test_every_command_checks_the_humans_models_before_the_model_loads(
    capsys, tmp_path, built, command, change, culprit
):
    code, _, err = cli(capsys, tmp_path, change(humans()), command=command)
    assert code == 2 and err.count("\n") == 1 and culprit in err
    assert built == []


def test_cli_codes_labels_with_a_note(capsys, tmp_path, built):
    data = _one_gender(humans())
    data["vote"] = data["vote"].map({0: "No", 1: "yes"})
    code, out, err = cli(capsys, tmp_path, data)
    assert (
        "answers given as option labels were mapped to their codes in column(s) vote"
        in out
    )
    assert code == 2 and "C(gender) has one level ('female')" in err
    assert built == []


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        (
            STUDY_YAML.replace('{"No": 0, "Yes": 1}', "{Clinton, Hillary: 1}"),
            "study.yaml line 9: option 'Clinton' of item 'vote' has no code",
        ),
        (
            STUDY_YAML.replace("Not at all: 1", "N" * (MAX_LABEL_CHARS + 1) + ": 1"),
            "study.yaml line 2: item 'concern': option label 'NNN",
        ),
    ],
)
def test_cli_study_file_errors_name_the_line(capsys, tmp_path, built, text, culprit):
    code, _, err = cli(capsys, tmp_path, humans(), text)
    assert code == 2 and err.count("\n") == 1 and culprit in err
    assert built == []


def test_a_simulators_bad_codes_get_no_data_fix():
    """``missing:`` and the label mapping fix a data file, not a simulator's output."""

    def answer(personas):
        return pd.DataFrame({"concern": "Very", "vote": 8}, index=personas.index)

    with pytest.raises(SimulatorError) as info:
        validate(make_study(), humans(), FunctionSimulator(answer), reps=1, resamples=0)
    assert "holds value(s) 'Very' that are not among its option codes" in one_line(info)
    assert "missing:" not in str(info.value) and "coded" not in str(info.value)


def test_numbers_stored_as_text_are_named():
    data = humans().astype({"age": str})
    with pytest.raises(DataError) as info:
        check_human_models(make_study(), data)
    assert one_line(info).startswith("column 'age' holds numbers as text (")
