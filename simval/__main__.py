"""``python -m simval``: validate the bundled example against the ceiling and the floor.

Runs the example study's models on its reference population with the perfect
simulator (bootstrap of the humans) and the floor (each item from its marginal
distribution), and prints the headline numbers side by side.
"""

from __future__ import annotations

import pandas as pd

from simval.simulators import BootstrapSimulator, MarginalSimulator
from simval.tasks import load_task
from simval.validate import validate


def main(*, reps: int = 20, seed: int = 0) -> pd.DataFrame:
    """Validate the example task with both reference simulators; return the headline table."""
    task = load_task("example")
    simulators = {
        "bootstrap (ceiling)": BootstrapSimulator(task.human),
        "marginal (floor)": MarginalSimulator(task.human),
    }
    rows = {
        name: validate(
            task.study, task.human, simulator, reps=reps, seed=seed
        ).summary()
        for name, simulator in simulators.items()
    }
    return pd.DataFrame(rows)


if __name__ == "__main__":
    print("simval example task: 600 simulated reference respondents (not human data)")
    with pd.option_context("display.float_format", "{:.3f}".format):
        print(main().to_string())
