"""The study declaration: construction, YAML round trip, and errors that name the culprit."""

from __future__ import annotations

import pandas as pd
import pytest

from simval import Coherence, DataError, Item, Model, OptionError, Study, StudyError
from simval.tasks import load_task

LIKERT = {"Low": 1, "Mid": 2, "High": 3}


def make_study(**overrides) -> Study:
    fields = {
        "items": (
            Item("concern", "How concerned?", LIKERT, role="belief"),
            Item("share", "Share?", {"No": 0, "Yes": 1}, role="action"),
        ),
        "persona": ("age", "gender"),
        "treatment": "arm",
        "vignettes": {"a": "Vignette A", "b": "Vignette B"},
        "models": (
            Model(
                "share ~ C(arm) + concern + age", family="logit", cov="cluster:gender"
            ),
        ),
        "subgroups": ("gender",),
        "coherence": (Coherence("concern", "share", "concern == 3 and share == 1"),),
    }
    return Study(**{**fields, **overrides})


def test_yaml_round_trip(tmp_path):
    study = make_study()
    path = tmp_path / "study.yaml"
    study.to_yaml(path)
    assert Study.from_yaml(path) == study
    assert study.item("concern").codes == (1, 2, 3)
    assert study.item("concern").labels == ("Low", "Mid", "High")
    assert study.persona_columns == ("age", "gender", "arm")
    assert [i.name for i in study.items_with_role("belief")] == ["concern"]


def test_persona_text_round_trips(tmp_path):
    study = make_study(persona_text="{{ age }}-year-old {{ gender | lower }}")
    path = tmp_path / "study.yaml"
    study.to_yaml(path)
    assert Study.from_yaml(path) == study


def test_only_items_are_required():
    study = Study(items=[Item("q", "Q?", {"a": 1})])
    assert study.models == () and study.treatment == () and study.vignettes == {}


def test_bundled_example_loads():
    task = load_task("example")
    assert len(task.human) == 600
    assert {m.family for m in task.study.models} == {"logit", "ols"}


@pytest.mark.parametrize(
    "overrides, culprit",
    [
        (
            {"items": (Item("q", "Q", LIKERT), Item("q", "Q again", LIKERT))},
            "duplicate.*: q",
        ),
        ({"models": (Model("share ~ income"),)}, "income"),
        ({"models": (Model("age ~ concern"),)}, "'age'"),
        ({"coherence": (Coherence("concern", "share", "trust > 3"),)}, "trust"),
        ({"coherence": (Coherence("worry", "share", "share == 1"),)}, "worry"),
        ({"subgroups": ("region",)}, "region"),
        ({"persona": ("age", "concern")}, "concern"),
        ({"persona": ("age", "arm")}, "arm.*persona and as treatment"),
        ({"vignettes": {"a | x": "A"}}, "'a | x' names 2 level"),
        (
            {"treatment": (), "models": (), "subgroups": ()},
            "vignettes but no treatment",
        ),
        ({"persona_text": "{{ age }} from {{ region }}"}, "region.*not persona"),
        ({"persona_text": "{{ age "}, "persona_text"),
    ],
)
def test_inconsistent_study_names_culprit(overrides, culprit):
    with pytest.raises(StudyError, match=culprit):
        make_study(**overrides)


def test_duplicate_option_code_names_both_options():
    with pytest.raises(StudyError, match="'Mid'.*'High'|code 2"):
        Item("q", "Q", {"Low": 1, "Mid": 2, "High": 2})


@pytest.mark.parametrize(
    "build, culprit",
    [
        (lambda: Item("q", "Q", LIKERT, role="attitude"), "attitude"),
        (lambda: Model("y ~ x", family="tobit"), "tobit"),
        (lambda: Model("y ~ x", cov="HC9"), "HC9"),
    ],
)
def test_bad_options_list_allowed_values(build, culprit):
    with pytest.raises(OptionError, match=culprit) as info:
        build()
    assert "choose one of" in str(info.value)


def test_yaml_unknown_field_and_bad_entry(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("items:\n  - {name: q, text: Q, options: {a: 1}}\nsubgroup: [x]\n")
    with pytest.raises(StudyError, match="subgroup"):
        Study.from_yaml(path)
    path.write_text("items:\n  - {name: q, text: Q, options: {a: 1}, colour: red}\n")
    with pytest.raises(StudyError, match="'q'.*colour"):
        Study.from_yaml(path)


def test_check_data_names_missing_column_and_bad_code():
    study = make_study()
    good = pd.DataFrame(
        {
            "age": [30, 40],
            "gender": ["F", "M"],
            "arm": ["a", "b"],
            "concern": [1, 3],
            "share": [0, 1],
        }
    )
    study.check_data(good)
    with pytest.raises(DataError, match="gender"):
        study.check_data(good.drop(columns="gender"))
    with pytest.raises(DataError, match="'concern'.*7"):
        study.check_data(good.assign(concern=[1, 7]))
    with pytest.raises(DataError, match="'arm'.*c"):
        study.check_data(good.assign(arm=["a", "c"]))


def factorial_study() -> Study:
    arms = [
        f"{who} | {badge}" for who in ("firm", "startup") for badge in ("no", "yes")
    ]
    return make_study(
        treatment=("requester", "badge"),
        vignettes={arm: f"Vignette {arm}" for arm in arms},
        models=(Model("share ~ C(requester) * C(badge) + concern", family="logit"),),
        subgroups=("gender", "badge"),
    )


def test_factorial_treatment_names_arms_and_round_trips(tmp_path):
    study = factorial_study()
    assert study.persona_columns == ("age", "gender", "requester", "badge")
    assert study.arm_of({"requester": "startup", "badge": "yes"}) == "startup | yes"
    assert study.arm_of({"requester": "startup", "badge": None}) is None
    df = pd.DataFrame({"requester": ["firm", "startup"], "badge": ["no", None]})
    assert study.arms(df).tolist() == ["firm | no", None]
    path = tmp_path / "study.yaml"
    study.to_yaml(path)
    assert "- requester" in path.read_text()
    assert Study.from_yaml(path) == study


def test_check_data_names_factorial_arm_without_vignette():
    study = factorial_study()
    data = pd.DataFrame(
        {
            "age": [30, 40],
            "gender": ["F", "M"],
            "requester": ["firm", "agency"],
            "badge": ["no", "yes"],
            "concern": [1, 3],
            "share": [0, 1],
        }
    )
    with pytest.raises(DataError, match=r"'requester', 'badge'.*'agency \| yes'"):
        study.check_data(data)
    study.check_data(data.assign(requester=["firm", "startup"]))
