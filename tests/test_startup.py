"""simval --help and --version start fast: in a fresh interpreter they load none of the
heavy libraries, and cost well under a second of CPU beyond a bare ``python -c pass``."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys

import pytest

HEAVY = (
    "numpy", "pandas", "scipy", "statsmodels", "torch", "transformers", "peft",
    "sklearn",
)  # fmt: skip
"""What the help must not load."""

PROBE = """
import json, sys
from simval.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "loaded": [m for m in HEAVY if m in sys.modules]}))
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        [],
        *([command, "--help"] for command in
          ("validate", "bench", "rectify", "finetune", "plan", "demo", "task")),
    ],
    ids=lambda argv: " ".join(argv) or "bare",
)  # fmt: skip
def test_help_and_version_load_nothing_heavy(argv):
    done = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{PROBE}", *argv],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "loaded": []}


def cpu_seconds(*argv: str) -> float:
    """The median user + system CPU time of three runs of ``python argv``; CPU time,
    not wall time, so that other work on the machine does not count."""
    spent = []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, *argv], capture_output=True, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent.append(
            after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        )
    return statistics.median(spent)


def test_version_and_help_cost_under_a_second_beyond_bare_python():
    bare = cpu_seconds("-c", "pass")
    for argv in (["--version"], ["--help"], ["validate", "--help"]):
        assert cpu_seconds("-m", "simval", *argv) - bare < 1.0, argv
