"""The layering holds: the import contracts of pyproject.toml ([tool.importlinter]) are
kept, they break on a cycle or on a library module importing the reports, and
``import simval`` stays light while the library never loads the reports."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint(folder: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``folder`` with the project's contracts."""
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()",
         "--no-cache", "--no-logo"],
        cwd=folder, capture_output=True, text=True, check=False,
        env={"PYTHONPATH": str(folder), "PATH": ""},
    )  # fmt: skip


def test_the_import_contracts_hold():
    """Every contract is kept, function-level and TYPE_CHECKING imports counted."""
    linted = _lint(ROOT)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "3 kept, 0 broken" in linted.stdout


def test_the_contracts_break_on_a_cycle_and_on_the_library_importing_the_reports(
    tmp_path,
):
    """A copy of the package whose results module imports the report inside a function
    (as ``Validation.to_html`` did) and whose report computes with scipy: all three
    contracts break, naming the culprits."""
    shutil.copytree(
        ROOT / "simval",
        tmp_path / "simval",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    results = tmp_path / "simval" / "results.py"
    results.write_text(
        results.read_text()
        + "\n\ndef _report():\n    from simval.report import render\n"
    )
    blocks = tmp_path / "simval" / "report" / "blocks.py"
    blocks.write_text(blocks.read_text() + "\nimport scipy.stats\n")
    linted = _lint(tmp_path)
    assert linted.returncode == 1
    assert "0 kept, 3 broken" in linted.stdout
    assert "simval.results is not allowed to import simval.report" in linted.stdout
    assert "simval.report.blocks -> scipy" in linted.stdout


def test_import_simval_is_light_and_the_library_never_loads_the_reports():
    """``import simval`` loads no submodule; the validation, its resampling and its
    result load neither ``simval.report`` nor its figures' library (matplotlib)."""
    code = (
        "import sys\nimport simval\n"
        "print(sorted(m for m in sys.modules if m.startswith('simval')))\n"
        "import simval.validate, simval.resampling, simval.results, simval.headline\n"
        "print([m for m in ('simval.report', 'matplotlib') if m in sys.modules])"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert shown.stdout.splitlines() == ["['simval']", "[]"]


def test_the_architecture_page_names_every_module():
    """docs/architecture.md is the design: its layout has a row for every module of
    the package (a new module without its line fails here, as it fails the exhaustive
    layers contract), and names no module that is gone."""
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([\w/]+\.py|tasks/)` \|", page, flags=re.MULTILINE))
    package = ROOT / "simval"
    modules = {
        str(path.relative_to(package))
        for path in package.glob("**/*.py")
        if path.name != "__init__.py"
        and not path.name.startswith("__")
        and "tasks" not in path.relative_to(package).parts
    } | {"tasks/"}
    assert modules - listed == set(), "modules without a line"
    assert listed - modules == set(), "lines for modules that are gone"
