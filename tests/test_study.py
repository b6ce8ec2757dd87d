"""The study declaration: construction, YAML round trip, and errors that name the culprit."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from simval import Coherence, DataError, Item, Model, OptionError, Study, StudyError
from simval.errors import FormulaError
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


def test_stateful_transform_of_an_undeclared_variable_is_refused():
    """formulaic leaves ``z`` of ``center(z)`` out of required_variables; Study must not."""
    with pytest.raises(StudyError, match="undeclared variable.*: z"):
        make_study(models=(Model("share ~ center(z) + concern"),))
    with pytest.raises(StudyError, match="undeclared variable.*: income, z"):
        make_study(models=(Model("share ~ poly(z, 2) + scale(income)"),))
    make_study(models=(Model("share ~ center(age) + scale(concern)"),))


BROKEN_YAML = [
    (
        "items:\n  - name: q\n    text: Why: because\n    options: {a: 1}\n",
        "line 3, column 14: mapping values are not allowed here",
    ),
    (
        "items:\n  - name: q\n    text: Q?\n    options: {a: 1, b: 2\npersona: [age]\n",
        (
            "line 5, column 8: expected ',' or '}', but got ':' (while parsing a flow "
            "mapping that starts at line 4, column 14)"
        ),
    ),
    (
        "items:\n  - name: q\n\ttext: Q?\n",
        "line 3, column 1: found character '\\t' that cannot start any token",
    ),
]


@pytest.mark.parametrize(("text", "problem"), BROKEN_YAML)
def test_yaml_syntax_error_names_file_line_and_column(tmp_path, text, problem):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(StudyError) as info:
        Study.from_yaml(path)
    assert str(info.value) == f"{path}, {problem}"


def test_unreadable_study_file_names_it(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(StudyError, match="missing.yaml: cannot read"):
        Study.from_yaml(missing)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe items: []")
    with pytest.raises(StudyError, match="binary.yaml: not UTF-8 text"):
        Study.from_yaml(binary)
    control = tmp_path / "control.yaml"
    control.write_text("items: \x07\n")
    with pytest.raises(StudyError, match="control.yaml: unacceptable character"):
        Study.from_yaml(control)


ITEM = "{name: q, text: Q, options: {a: 1, b: 2}}"


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        ("items: 3\n", "items must be a list of item entries, got 3"),
        ("items: [3]\n", "each item must be a mapping, got 3"),
        (
            "items:\n  - {name: q, text: Q, options: {a: '1'}}\n",
            "item 'q': option 'a' has code '1'; codes must be numbers",
        ),
        ("items:\n  - {name: q, text: Q, options: [a, b]}\n", "options must map"),
        ("items:\n  - {name: q, text: Q, options: 3}\n", "options must map"),
        ("items:\n  - {name: q, text: 7, options: {a: 1}}\n", "text must be text"),
        ("items:\n  - {name: 3, text: Q, options: {a: 1}}\n", "name must be text"),
        ("items:\n  - {name: q, text: Q, options: {No: 0, Yes: 1}}\n", "quote"),
        ("items:\n  - {name: q, text: Q}\n", "item 'q'.*options"),
        (f"items: [{ITEM}]\npersona: 3\n", "persona must be a column name"),
        (f"items: [{ITEM}]\npersona: {{age: 1}}\n", "persona must be a column name"),
        (f"items: [{ITEM}]\ntreatment: [1, 2]\n", "treatment must be a column name"),
        (f"items: [{ITEM}]\nsubgroups: 3\n", "subgroups must be a column name"),
        (f"items: [{ITEM}]\ntreatment: arm\nvignettes: [a]\n", "vignettes must map"),
        (f"items: [{ITEM}]\nmodels: {{formula: q ~ 1}}\n", "models must be a list"),
        (f"items: [{ITEM}]\nmodels: [{{formula: 3}}]\n", "formula must be text"),
        (
            f"items: [{ITEM}]\ncoherence: [{{belief: q, action: q, rule: 3}}]\n",
            "coherence rule must be text",
        ),
        (f"items: [{ITEM}]\npersona_text: 3\n", "persona_text must be text"),
        (f"items: [{ITEM}]\n3: x\nz: y\n", "unknown study field.*3, z"),
        ("- 3\n", "expected a mapping at the top level"),
    ],
)
def test_wrong_field_type_is_one_line_error_naming_the_file(tmp_path, text, culprit):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(StudyError, match=culprit) as info:
        Study.from_yaml(path)
    assert re.match(rf"{re.escape(str(path))}( line \d+)?: ", str(info.value))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("model", "kind", "culprit", "where"),
    [  # a model's own field names its line; a formula is read with the whole study
        (
            "{formula: q ~ 1, family: tobit}",
            OptionError,
            "tobit.*choose one",
            " line 2",
        ),
        ("{formula: q ~ (1}", FormulaError, "cannot parse formula 'q ~ \\(1'", ""),
    ],
)
def test_yaml_option_or_formula_error_names_the_file_and_keeps_its_kind(
    tmp_path, model, kind, culprit, where
):
    path = tmp_path / "study.yaml"
    path.write_text(f"items: [{ITEM}]\nmodels: [{model}]\n")
    with pytest.raises(kind, match=culprit) as info:
        Study.from_yaml(path)
    assert str(info.value).startswith(f"{path}{where}: ")


def test_cluster_column_must_be_declared():
    """cov='cluster:<col>' is checked when the study is built, not after the model runs."""
    items = (Item("y", "y", {"0": 0, "1": 1}),)
    with pytest.raises(StudyError, match="'site'.*not a persona"):
        Study(items=items, persona=("x",), models=(Model("y ~ x", cov="cluster:site"),))
    Study(
        items=items, persona=("x", "site"), models=(Model("y ~ x", cov="cluster:site"),)
    )


def test_margin_is_declared_per_model_and_round_trips(tmp_path):
    items = (Item("y", "y", {"0": 0, "1": 1}),)
    study = Study(items=items, persona=("x",), models=(Model("y ~ x", margin=0.2),))
    study.to_yaml(tmp_path / "s.yaml")
    assert Study.from_yaml(tmp_path / "s.yaml").models[0].margin == 0.2
    with pytest.raises(StudyError, match="margin"):
        Model("y ~ x", margin=-1)


def test_declared_missing_answers_are_valid_blanked_and_counted():
    """An item's missing codes pass the data check, become NaN for every metric and
    fit (Study.blank_missing), are never options, round-trip through YAML, and are
    counted in a note; a missing code that is also an option is refused."""
    import numpy as np

    from simval.study import Item, Study, StudyError, study_from_dict, study_to_dict

    item = Item(
        "trust", "Trust?", {"No": 0, "Yes": 1}, missing={"Don't know": 8, "Refused": 9}
    )
    study = Study(items=(item,), persona=("age",))
    data = pd.DataFrame({"age": [30, 40, 50, 60], "trust": [0, 1, 8, 9]})
    study.check_data(data)
    assert item.labels == ("No", "Yes")
    blanked = study.blank_missing(data)
    assert (
        blanked["trust"].tolist()[:2] == [0, 1] and blanked["trust"].isna().sum() == 2
    )
    assert study.blank_missing(blanked) is blanked  # nothing left to blank: no copy
    assert study.missing_answers_note(data) == (
        "Declared missing answers, left out of each item's metrics and of every fit "
        "that uses the item: trust 2 (Don't know: 1, Refused: 1)."
    )
    assert study.missing_answers_note(blanked) is None
    assert study_from_dict(study_to_dict(study)) == study
    with pytest.raises(StudyError, match="'Refused' \\(1\\) is also an option"):
        Item("trust", "Trust?", {"No": 0, "Yes": 1}, missing={"Refused": 1})
    with pytest.raises(DataError, match="7"):
        study.check_data(data.assign(trust=[0, 1, 7, np.nan]))


def test_validate_leaves_declared_missing_answers_out_and_says_so(tmp_path):
    """A regression on an item with 'don't know' codes fits only the substantive
    answers, and the validation's notes count what was left out."""
    import numpy as np

    import simval
    from simval.study import Item, Model, Study

    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=n)
    y = np.where(rng.random(n) < 0.1, 8.0, (x + rng.normal(size=n) > 0).astype(float))
    data = pd.DataFrame({"x": x, "y": y})
    study = Study(
        items=(Item("y", "Y?", {"No": 0, "Yes": 1}, missing={"Don't know": 8}),),
        persona=("x",),
        models=(Model("y ~ x", "logit", "HC1"),),
    )
    result = simval.validate(
        study, data, simval.BootstrapSimulator(data), reps=3, seed=0, progress=False
    )
    answered = int((y != 8).sum())
    recovery = result.recovery.query("subgroup == 'overall'")
    assert recovery["nobs_human"].iloc[0] == answered
    assert (
        f"y {n - answered} (Don't know: {n - answered})"
        in (result.notes["missing_answers"])
    )
    # the resampled humans' "don't know" is the simulated side's nonresponse, not a code
    assert 0.05 < result.notes["nonresponse"]["y"] < 0.15
    assert result.replicate_coefficients["nobs"].max() < n
    from simval.report import write_report

    _, markdown = write_report({"bootstrap": result}, out=tmp_path / "r.html")
    assert "Declared missing answers" in markdown.read_text()


# --- number items ----------------------------------------------------------------------


def test_number_items_round_trip_and_check_their_data(tmp_path):
    """A number item declares a scale instead of options: YAML keeps it, the data check
    names values off the scale, and a declared missing code outside it is allowed."""
    from simval.study import Item, Number, Study

    warmth = Item(
        "warmth", "How warm?", number={"min": 0, "max": 100, "whole": True},
        missing={"Refused": 999},
    )  # fmt: skip
    hours = Item("hours", "Hours?", number=Number(min=0))
    study = Study(items=(warmth, hours))
    study.to_yaml(tmp_path / "s.yaml")
    again = Study.from_yaml(tmp_path / "s.yaml")
    assert again == study and again.item("warmth").number == Number(0, 100, whole=True)
    assert warmth.choices is None and hours.choices is None
    income = Item("income", "Income?", number={"min": 0, "max": 10**12, "whole": True})
    assert income.choices is None and income.number.count() == 10**12 + 1
    assert Item("s", "S?", number={"min": 0, "max": 10, "whole": True}).choices == {
        str(v): float(v) for v in range(11)
    }
    good = pd.DataFrame(
        {"warmth": [0, 55, 100, 999, None], "hours": [0.5, 2, 0, 9.25, 1]}
    )
    study.check_data(good)
    for bad, shown in (
        ({"warmth": [101]}, "101"),
        ({"warmth": [2.5]}, "2.5"),
        ({"hours": [-1]}, "-1"),
        ({"warmth": ["warm"]}, "warm"),
    ):
        frame = good.iloc[:1].assign(**bad)
        with pytest.raises(DataError, match=f"{shown}.*not a (whole )?number"):
            study.check_data(frame)


@pytest.mark.parametrize(
    ("fields", "culprit"),
    [
        (
            {"options": {"a": 1}, "number": {"min": 0}},
            "both options and a number scale",
        ),
        ({"number": {"min": 5, "max": 5}}, "min 5 must lie below max 5"),
        ({"number": {"low": 0}}, "unknown number field\\(s\\) low"),
        ({"number": {"min": 0.2, "max": 0.8, "whole": True}}, "no whole number"),
        (
            {"number": {"min": 0, "max": 10}, "missing": {"DK": 5}},
            "'DK' \\(5\\) lies on",
        ),
        ({"number": "0-100"}, "number must be a mapping"),
        ({"number": {"max": float("inf")}}, "finite number"),
        (
            {"number": {"min": 0, "max": 9, "whole": "yes"}},
            "whole must be true or false",
        ),
    ],
)
def test_bad_number_items_are_named(fields, culprit):
    from simval.study import Item

    with pytest.raises(StudyError, match=culprit):
        Item("t", "T?", **fields)
