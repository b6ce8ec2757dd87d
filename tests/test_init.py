"""``simval init``: a study.yaml drafted from a labelled Stata or SPSS file loads, passes
``check_data`` on that file, declares the file's options, codes and non-answers, shows
labelled persona values as text in the prompt while formulas read their numbers, and
never overwrites an existing file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from simval.cli import main
from simval.comparison import check_human_models
from simval.draft import write_draft
from simval.errors import DataError
from simval.regression import fit
from simval.simulators.prompts import PromptRenderer, PromptTemplate
from simval.study import Study
from simval.tasks import read_human

LABELS = {
    "gender": {1: "Male", 2: "Female"},
    "educ": {1: "High school", 2: "Some college", 3: "Degree", -8: "Don't know"},
    "trust": {
        1: "Not at all",
        2: "A little",
        3: "Somewhat",
        4: "A lot",
        8: "Don't know",
        9: "Refused",
    },
    "vote": {1: "Clinton", 2: "Trump", -1: "Not asked"},
    "spend": {-1: "Too much", 0: "About right", 1: "Too little"},
}
QUESTIONS = {
    "trust": "How much do you trust the federal government?",
    "vote": "Who did you vote for in 2016?",
    "gender": "Gender",
}


def _survey(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Respondents with labelled items (a 1-4 scale with 8 and 9 for non-answers, a
    vote with -1 'not asked', a -1/0/1 scale whose -1 is an answer), a labelled
    persona, an unlabelled age, a weight, an id and free text."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "caseid": np.arange(1000, 1000 + n),
            "age": rng.integers(18, 90, n),
            "gender": rng.choice([1, 2], n),
            "educ": rng.choice([1, 2, 3, -8], n, p=[0.3, 0.3, 0.3, 0.1]),
            "trust": rng.choice(
                [1, 2, 3, 4, 8, 9], n, p=[0.2, 0.3, 0.2, 0.2, 0.05, 0.05]
            ),
            "vote": rng.choice([1, 2, -1], n),
            "spend": rng.choice([-1, 0, 1], n),
            "weight": rng.uniform(0.5, 2.0, n),
            "comment": [f"comment {i}" for i in range(n)],
        }
    )


@pytest.fixture
def dta(tmp_path):
    path = tmp_path / "cces.dta"
    _survey().to_stata(
        path, write_index=False, value_labels=LABELS, variable_labels=QUESTIONS
    )
    return path


def test_the_draft_of_a_stata_file_loads_and_passes_its_data_check(tmp_path, dta):
    path, draft = write_draft(dta, out_dir=tmp_path / "study")
    study = Study.from_yaml(path)
    assert study == draft.study
    study.check_data(read_human(dta))
    assert study.item_names == ("trust", "vote", "spend")
    assert study.persona == ("age", "gender", "educ")
    trust, vote, spend = study.items
    assert trust.text == QUESTIONS["trust"]
    assert trust.options == {"Not at all": 1, "A little": 2, "Somewhat": 3, "A lot": 4}
    assert trust.missing == {"Don't know": 8, "Refused": 9}
    assert vote.missing == {"Not asked": -1}  # a negative code apart from the scale
    assert spend.options == {"Too much": -1, "About right": 0, "Too little": 1}
    assert spend.missing == {}
    assert spend.text == "spend"  # no variable label: the comment above asks for it
    assert set(draft.left_out) == {"caseid", "weight", "comment"}
    text = path.read_text()
    assert "# the file gives no question text: write it" in text
    assert "# weight: weight" in text
    assert "# educ: code(s) -8 mean no answer" in text


def test_the_prompt_shows_a_labelled_persona_as_text_and_the_formula_its_number(
    tmp_path, dta
):
    """persona_text maps gender 2 to 'Female' for the prompt (a missing value reads
    'not stated'); the data keeps 1 and 2, so the commented model, uncommented, fits."""
    path, draft = write_draft(dta, out_dir=tmp_path / "study")
    people = read_human(dta)
    renderer = PromptRenderer(
        study=draft.study, template=PromptTemplate(), tokenizer=None
    )
    first = people.iloc[0]
    prompt = renderer(first, draft.study.items[0])
    gender = LABELS["gender"][first["gender"]]
    educ = LABELS["educ"][first["educ"]]
    assert f"About you: age: {first['age']}; Gender: {gender}; educ: {educ}" in prompt
    unknown = first.copy()
    unknown["gender"] = np.nan
    assert "Gender: not stated;" in renderer(unknown, draft.study.items[0])

    edited = _uncommented(path)
    (model,) = edited.models
    assert model.formula == "vote ~ age + C(gender) + C(educ)"  # fewest answers
    assert model.family == "mnlogit"  # two options coded 1, 2: logit needs 0/1
    check_human_models(edited, people)
    assert edited.subgroups == ("gender", "educ")
    fitted = fit(
        model.formula, edited.blank_missing(people), family=model.family, cov=model.cov
    )
    assert any("C(gender)[T.2]" in term for term in fitted.table["term"])


def _uncommented(path) -> Study:
    """The drafted study with its commented model template uncommented, as its comments
    invite."""
    head, _, template = path.read_text().partition("# models:")
    uncommented = "\n".join(
        line.removeprefix("# ") for line in f"# models:{template}".splitlines()
    )
    edited = path.parent / "edited.yaml"
    edited.write_text(head + uncommented)
    return Study.from_yaml(edited)


def test_the_draft_of_an_spss_file_declares_its_user_missing_values(tmp_path):
    """SPSS's declared missing value 7 ('No opinion', a label no rule would catch)
    goes under missing:; a number column without labels becomes a number item."""
    people = _survey(n=80).drop(columns=["comment"])
    people["therm"] = np.random.default_rng(1).integers(0, 101, len(people))
    people.loc[:4, "trust"] = 7
    path = tmp_path / "cces.sav"
    pyreadstat.write_sav(
        people.astype(float),
        str(path),
        column_labels=QUESTIONS,
        variable_value_labels={**LABELS, "trust": {**LABELS["trust"], 7: "No opinion"}},
        missing_ranges={"trust": [7, 8, 9]},
    )
    written, _ = write_draft(path, out_dir=tmp_path / "study")
    study = Study.from_yaml(written)
    study.check_data(read_human(path))
    assert study.item("trust").missing == {
        "No opinion": 7,
        "Don't know": 8,
        "Refused": 9,
    }
    therm = study.item("therm")
    assert therm.number is not None and therm.number.whole
    assert (therm.number.min, therm.number.max) == (
        people["therm"].min(),
        people["therm"].max(),
    )


def test_init_never_overwrites_and_says_what_it_drafted(capsys, tmp_path, dta):
    folder = tmp_path / "mine"
    assert main(["init", str(dta), "--out", str(folder)]) == 0
    out = capsys.readouterr().out
    study = folder / "study.yaml"
    assert f"study: {study} (3 items, 3 persona columns; left out: caseid" in out
    before = study.read_text()
    assert main(["init", str(dta), "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{study} already exists" in err
    assert study.read_text() == before
    with pytest.raises(DataError, match="already exists"):
        write_draft(dta, out_dir=folder)


def test_init_on_a_semicolon_csv_says_how_it_split_it(capsys, tmp_path):
    """A CSV has no labels: its few-valued number columns become number items, and the
    detected delimiter and decimal commas are said."""
    path = tmp_path / "excel.csv"
    path.write_text("age;trust;score\n34;1;2,5\n51;3;3,25\n27;2;1,75\n")
    assert main(["init", str(path), "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "separated by ';' (semicolon) and decimal commas (detected)" in out
    study = Study.from_yaml(tmp_path / "s" / "study.yaml")
    study.check_data(read_human(path))
    assert study.item("score").number.whole is False


def test_the_worked_example_of_docs_study_md(tmp_path):
    """docs/study.md's cces.dta: the first respondent (age 79, gender 2, pid7 8) reads
    'age: 79; gender: Female; Party ID: Not sure' in the drafted prompt."""
    rng, n = np.random.default_rng(0), 400
    path = tmp_path / "cces.dta"
    pd.DataFrame(
        {
            "caseid": np.arange(1, n + 1),
            "age": rng.integers(18, 90, n),
            "gender": rng.choice([1, 2], n),
            "pid7": rng.choice([1, 2, 3, 4, 5, 6, 7, 8], n),
            "trust": rng.choice([1, 2, 3, 4, 8, 9], n),
            "vote16": rng.choice([1, 2, -1], n),
        }
    ).to_stata(
        path,
        write_index=False,
        variable_labels={"pid7": "Party ID"},
        value_labels={
            "gender": {1: "Male", 2: "Female"},
            "pid7": {7: "Strong Republican", 8: "Not sure"},
        },
    )
    _, draft = write_draft(path, out_dir=tmp_path / "mystudy")
    people = read_human(path)
    assert people.iloc[0][["age", "gender", "pid7"]].tolist() == [79, 2, 8]
    renderer = PromptRenderer(
        study=draft.study, template=PromptTemplate(), tokenizer=None
    )
    prompt = renderer(people.iloc[0], draft.study.item("trust"))
    assert "About you: age: 79; gender: Female; Party ID: Not sure" in prompt


def test_columns_a_template_cannot_name_and_long_label_sets_are_left_as_codes(
    tmp_path,
):
    """A persona column named 'age group' (Parquet allows it) stays out of
    persona_text, a comment says why; one with labels past the template's budget shows
    its codes."""
    n = 30
    states = [f"State number {code} " + "x" * 80 for code in range(1, 61)]
    people = pd.DataFrame(
        {
            "state": pd.Categorical.from_codes(np.arange(n) % 60, states),
            "age group": np.arange(n) % 3,
            "trust": pd.Categorical.from_codes(np.arange(n) % 4, list("abcd")),
        }
    )
    path = tmp_path / "s.parquet"
    people.to_parquet(path)
    written, draft = write_draft(path, out_dir=tmp_path / "d")
    text = written.read_text()
    assert "# state: 60 labels, too many to show in persona_text" in text
    assert "state: {{ state }}" in text
    assert "# age group: not a name a template or formula can use" in text
    assert draft.study.persona_text == "state: {{ state }}"
    Study.from_yaml(written).check_data(read_human(path))


def _chile(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Respondents like carData's Chile survey: coded persona (region 1-5, sex 1-2,
    educ 1-3 with 9 for no answer), age and income amounts, the size of the
    respondent's community (ten sizes, 3750 to 250000), and three questions coded 1-5
    or 1-4 with 8 (Don't know) and 9 (Refused) apart above them."""
    rng = np.random.default_rng(seed)
    sizes = [3750, 8750, 15000, 25000, 45000, 62500, 87500, 125000, 175000, 250000]
    incomes = [2500, 7500, 15000, 35000, 75000, 125000, 200000]
    return pd.DataFrame(
        {
            "caseid": np.arange(1, n + 1),
            "region": rng.integers(1, 6, n),
            "sex": rng.integers(1, 3, n),
            "age": rng.integers(18, 71, n),
            "educ": rng.choice([1, 2, 3, 9], n, p=[0.4, 0.3, 0.25, 0.05]),
            "income": rng.choice(incomes, n),
            "population": rng.choice(sizes, n),
            "statusquo": rng.choice([1, 2, 3, 4, 5, 8], n),
            "vote": rng.choice([1, 2, 3, 4, 8, 9], n),
            "econ": rng.choice([1, 2, 3, 4, 8], n, p=[0.2, 0.3, 0.3, 0.1, 0.1]),
        }
    )


CHILE_LABELS = {
    "region": {1: "Central", 2: "Santiago area", 3: "North", 4: "South", 5: "City"},
    "sex": {1: "Male", 2: "Female"},
    "educ": {1: "Primary", 2: "Secondary", 3: "Post-secondary", 9: "No answer"},
    "statusquo": {
        1: "Strongly oppose",
        2: "Oppose",
        3: "Neither",
        4: "Support",
        5: "Strongly support",
        8: "Don't know",
    },
    "vote": {1: "Yes", 2: "No", 3: "Abstain", 4: "Blank", 8: "Undecided", 9: "Refused"},
    "econ": {1: "Very bad", 2: "Bad", 3: "Good", 4: "Very good", 8: "Don't know"},
}


def test_the_template_asks_a_labelled_question_not_a_community_size(tmp_path):
    """A number column without labels spanning 3750 to 250000 is a quantity, taken
    for persona with a comment; the template's outcome is the labelled item with the
    fewest answers (econ: 4, before statusquo's 5), and the uncommented model fits."""
    people = _chile()
    path = tmp_path / "chile.sav"
    pyreadstat.write_sav(
        people.astype(float), str(path), variable_value_labels=CHILE_LABELS
    )
    written, _ = write_draft(path, out_dir=tmp_path / "study")
    study = Study.from_yaml(written)
    study.check_data(read_human(path))
    assert study.item_names == ("statusquo", "vote", "econ")
    assert "population" in study.persona
    text = written.read_text()
    assert "# population: taken for persona, not an item: numbers from 3750 to " in text
    edited = _uncommented(written)
    (model,) = edited.models
    assert model.formula == (
        "econ ~ C(region) + C(sex) + age + C(educ) + income + population"
    )
    assert model.family == "ologit"
    fitted = fit(
        model.formula,
        edited.blank_missing(read_human(path)),
        family=model.family,
        cov=model.cov,
    )
    assert "C(region)[T.2]" in fitted.table["term"].tolist()
    check_human_models(edited, read_human(path))


def test_a_csv_s_codes_set_apart_above_a_scale_go_under_missing(tmp_path):
    """Without labels, 8 and 9 above 1-4, 98 and 99 above 1-5 and 998 above 0-100 are
    non-answers (missing:, a comment naming the guess) and the number range covers the
    rest (therm: the answers' range); 7 in a 1-7 scale, 250000 among community sizes and 0-10 stay answers. The
    template's outcome is then the number item with the fewest answers."""
    rng, n = np.random.default_rng(2), 300
    people = _chile(n=n).drop(columns="statusquo")
    people["trust"] = rng.choice([1, 2, 3, 4, 5, 98, 99], n)
    people["agree"] = rng.integers(1, 8, n)
    people["therm"] = np.where(rng.random(n) < 0.05, 998, rng.integers(0, 101, n))
    people["scale"] = rng.integers(0, 11, n)
    path = tmp_path / "chile.csv"
    people.to_csv(path, index=False)
    written, _ = write_draft(path, out_dir=tmp_path / "study")
    study = Study.from_yaml(written)
    study.check_data(read_human(path))
    answered = people["therm"][people["therm"] < 998]
    expected = {
        "vote": (1, 4, {"Missing 8": 8, "Missing 9": 9}),
        "econ": (1, 4, {"Missing 8": 8}),
        "trust": (1, 5, {"Missing 98": 98, "Missing 99": 99}),
        "agree": (1, 7, {}),
        "therm": (answered.min(), answered.max(), {"Missing 998": 998}),
        "scale": (0, 10, {}),
    }
    assert study.item_names == tuple(expected)
    for name, (low, high, missing) in expected.items():
        item = study.item(name)
        assert (item.number.min, item.number.max, item.missing) == (low, high, missing)
    assert "population" in study.persona
    text = written.read_text()
    assert "# code(s) 98, 99 lie apart above the other answers (1 to 5)" in text
    assert "# educ: code(s) 9 mean no answer (a guess" in text
    edited = _uncommented(written)
    (model,) = edited.models
    assert model.formula.startswith("vote ~ ") and model.family == "ols"
    check_human_models(edited, read_human(path))


def test_few_coded_persona_columns_enter_the_template_as_factors(tmp_path):
    """Unlabelled region 1-5, sex 1-2 and educ 1-3 (9 set apart) are C(...); age,
    income amounts and a count of children (named so) stay numbers; the model fits."""
    people = _chile(n=400)[["region", "sex", "age", "educ", "income", "statusquo"]]
    people["kids"] = np.random.default_rng(3).integers(0, 5, len(people))
    path = tmp_path / "people.csv"
    people.to_csv(path, index=False)
    written, _ = write_draft(path, out_dir=tmp_path / "study")
    Study.from_yaml(written).check_data(read_human(path))
    edited = _uncommented(written)
    (model,) = edited.models
    assert model.formula == (
        "statusquo ~ C(region) + C(sex) + age + C(educ) + income + kids"
    )
    fitted = fit(
        model.formula,
        edited.blank_missing(read_human(path)),
        family=model.family,
        cov=model.cov,
    )
    terms = fitted.table["term"].tolist()
    assert {"C(region)[T.5]", "C(educ)[T.9]", "age", "kids"} <= set(terms)
    check_human_models(edited, read_human(path))
