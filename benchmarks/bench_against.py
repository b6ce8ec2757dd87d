"""validate's time and numbers against another version of simval, on the same machine.

A refactor should move code, not numbers or time. This times ``validate`` of the
disclosure task (929 humans) against a ``BootstrapSimulator``, 20 replicates, 200
resamples, fresh reference included, best of 3 calls on one thread, for this tree and
for another version's ``simval/`` folder, alternating (other, this, other, this), each in
its own interpreter, and prints the seconds, the ratio and the headline JSD with its
reference (which must agree).

    git archive 2473bed simval | tar -x -C /tmp/before   # the version to compare with
    .venv/bin/python benchmarks/bench_against.py /tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ONE_RUN = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from simval.simulators.reference import BootstrapSimulator
from simval.tasks import load_task
from simval.validate import validate
task = load_task("disclosure")
simulator = BootstrapSimulator(task.human)
times = []
for _ in range(3):
    start = time.perf_counter()
    found = validate(task.study, task.human, simulator, reps=20, resamples=200, seed=0)
    times.append(time.perf_counter() - start)
summary = found.summary()
print(json.dumps({"seconds": min(times), "jsd": summary["jsd"],
                  "jsd_reference": summary["jsd_reference"]}))
"""

ROOT = Path(__file__).resolve().parents[1]


def _time(tree: Path) -> dict[str, float]:
    """Best of 3 validate calls with the ``simval`` package found in ``tree``."""
    quiet = {
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    shown = subprocess.run(
        [sys.executable, "-c", ONE_RUN, str(tree)],
        capture_output=True, text=True, check=True, env={**os.environ, **quiet},
    )  # fmt: skip
    return json.loads(shown.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="a folder holding another simval/")
    other = parser.parse_args().other
    runs = [
        (name, _time(tree)) for name, tree in [("other", other), ("this", ROOT)] * 2
    ]
    for name, run in runs:
        print(f"{name:5} {run['seconds']:6.2f} s  jsd {run['jsd']:.6f}  "
              f"reference {run['jsd_reference']:.6f}")  # fmt: skip
    best = {
        n: min(run["seconds"] for name, run in runs if name == n)
        for n in ("this", "other")
    }
    print(f"this / other, the best of each: {best['this'] / best['other']:.2f}")


if __name__ == "__main__":
    main()
