"""Built-in tasks: a study declaration (study.yaml) and the code that makes its reference data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from simval.errors import check_option
from simval.study import Study

TASKS = ("example",)
_HERE = Path(__file__).parent


@dataclass(frozen=True)
class Task:
    """A built-in study and its reference respondents (simulated, labelled as such)."""

    name: str
    study: Study
    human: pd.DataFrame


def load_task(name: str, *, seed: int = 0) -> Task:
    """The built-in task ``name`` with its reference population drawn from ``seed``."""
    check_option("task", name, TASKS)
    from simval.tasks.example.population import population

    study = Study.from_yaml(_HERE / name / "study.yaml")
    human = population(seed=seed)
    study.check_data(human, what=f"the {name} task's reference population")
    return Task(name=name, study=study, human=human)
