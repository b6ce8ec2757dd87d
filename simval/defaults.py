"""The names and default values the ``simval`` command's flags show, readable without
numpy, pandas, scipy or torch, so that ``simval --help`` and ``--version`` start fast.

The modules that use them (``simval.bench``, ``simval.finetune``, ``simval.tasks``,
``simval.simulators``) import them from here: one place for each.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Literal

from simval.errors import StudyError

Mode = Literal["score", "generate"]
"""How a language-model simulator answers: read each option's probability, or sample."""
Api = Literal["completions", "chat"]
"""How a served model is asked."""
Strategy = Literal["random", "balanced", "per_arm"]
"""How a fine-tuning pilot is drawn."""

PILOT_SHARE = 0.1
"""The share of a task's respondents a ``:pilot`` spec is fine-tuned on (the paper's 10%)."""
DEMO_RESPONDENTS = 300
"""Holdout respondents the demo compares on: enough that the humans' own disclosure
models find effects (2 significant terms in each formula on the demo's 300; at 60,
none), few enough that a 2-core CPU scores both models in about 2.5 core-minutes."""
DEMO_TRAINING = {"epochs": 2, "layers": 4, "batch_size": 16, "lr": 1e-3}
"""How ``simval demo`` (and a ``:pilot`` spec) fine-tunes: LoRA on the last 4 of
SmolLM2's 30 blocks (the blocks below run forward only), two epochs at a raised
learning rate, whole (item, arm) groups per batch: cheap enough for the five-minute
demo (docs/runs.md), still moving the model visibly."""
FINETUNE_DEFAULTS = {"epochs": 3, "lr": 2e-4, "layers": None, "batch_size": 8}
"""``simval.finetune.finetune``'s defaults for the settings ``simval finetune`` takes."""

_TASKS_FOLDER = Path(__file__).parent / "tasks"


def discover_tasks(root: Path = _TASKS_FOLDER) -> dict[str, bool]:
    """Each task folder under ``root`` -> whether its respondents are simulated, sorted
    by the folders' ``ORDER`` (then name), read from each ``__init__.py`` without
    importing it (a task package loads pandas).

    A folder with a study.yaml is a task; a simulated one has population.py, a real one
    respondents.py. A folder with both or neither is refused, naming it.
    """
    found: dict[str, tuple[int, bool]] = {}
    for declaration in root.glob("*/study.yaml"):
        folder = declaration.parent
        simulated = (folder / "population.py").is_file()
        if simulated == (folder / "respondents.py").is_file():
            raise StudyError(
                f"task folder {folder}: give it population.py (simulated respondents) "
                "or respondents.py (real ones), not both or neither"
            )
        source = (folder / "__init__.py").read_text(encoding="utf-8")
        order = next(
            ast.literal_eval(node.value)
            for node in ast.parse(source).body
            if isinstance(node, ast.Assign)
            and any(getattr(t, "id", None) == "ORDER" for t in node.targets)
        )
        found[folder.name] = (order, simulated)
    ordered = sorted(found, key=lambda name: (found[name][0], name))
    return {name: found[name][1] for name in ordered}


_SIMULATED = discover_tasks()
SIMULATED_TASKS = tuple(name for name, simulated in _SIMULATED.items() if simulated)
"""The tasks whose respondents are a simulated reference population, in ``ORDER``."""
REAL_TASKS = tuple(name for name, simulated in _SIMULATED.items() if not simulated)
"""The tasks whose respondents are real survey respondents, in ``ORDER``."""
TASKS = (*SIMULATED_TASKS, *REAL_TASKS)
"""Every built-in task, the simulated ones first ."""
TASK_SUITES = {"real": REAL_TASKS, "simulated": SIMULATED_TASKS, "all": TASKS}
"""The suites ``simval bench --task`` takes."""
