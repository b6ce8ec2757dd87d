"""The calibration tables of docs/metrics.md, from the known processes of
tests/calibration.py (the ones tests/test_calibration.py checks), as Markdown.

    .venv/bin/python benchmarks/bench_calibration.py 200            # 14 rows x 200 data sets
    .venv/bin/python benchmarks/bench_calibration.py 200 decisions  # the four-term table

The first argument is the number of human data sets per row (default 300); ``decisions``
gives the decision-rate table (perfect and attenuated simulators, four terms, n from 150
to 3,000, 20 replicates) instead of the calibration table (OLS at n = 200 and 2,000,
logit at n = 300, 4 replicates).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from calibration import DECISION_RATE_SETTINGS, calibration_table


def main(argv: list[str]) -> None:
    """Print the table ``argv`` asks for (see the module's docstring)."""
    count = int(argv[0]) if argv else 300
    if len(argv) > 1 and argv[1] == "decisions":
        table = calibration_table(
            kinds=("perfect", "attenuated"), settings=DECISION_RATE_SETTINGS,
            datasets=count, reps=20,
        )  # fmt: skip
    else:
        table = calibration_table(
            settings=(("ols", 200), ("logit", 300), ("ols", 2000)), datasets=count
        )
    cells = [
        [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        for row in table.to_numpy()
    ]
    for row in [list(table.columns), ["---"] * len(table.columns), *cells]:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
