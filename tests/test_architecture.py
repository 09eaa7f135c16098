"""The architecture holds: import-linter's contracts (pyproject.toml, [tool.importlinter])
are kept, and they catch what they are there for.

The contracts: tasks and simulation -> archive -> calib; inside archive, cli ->
reprocessing -> execution -> associations | crds -> ingest -> catalog -> config; calib
imports no database, queue, archive, tasks or simulation code; nothing of production
imports simulation; no import cycle between siblings at any depth. Imports inside
functions count like any other (grimp reads every import statement).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("archive", "calib", "tasks", "simulation")
CONTRACTS = (
    "tasks and simulation -> archive -> calib",
    "archive: from the command line down to the catalog",
    "calib is the science only: no database, queue, archive, tasks or simulation",
    "simulation is off the production import path",
    "no import cycles between sibling modules or packages, at any depth",
)


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """Run ``lint-imports`` (no cache) in ``cwd`` on the packages found there."""
    exe = Path(sys.executable).with_name("lint-imports")
    command = str(exe) if exe.exists() else shutil.which("lint-imports")
    if command is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[test]'")
    env = {**os.environ, "PYTHONPATH": str(cwd)}  # the packages in cwd, not the installed ones
    return subprocess.run([command, "--no-cache", "--no-logo"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_import_contracts_are_kept():
    res = lint_imports(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    for name in CONTRACTS:
        assert f"{name} KEPT" in res.stdout, res.stdout


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + "\n\n" + text.strip() + "\n")


def test_contracts_catch_violations_hidden_in_functions(tmp_path):
    """A copy of the packages with one violation of each kind, every one of them in a
    function body where it would not run at import time: every contract breaks."""
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    # the catalog reaching up to the planner: a layer violation and a cycle in archive
    _append(tmp_path / "archive" / "catalog" / "queries.py", '''
def _planner():
    from archive.reprocessing.planner import plan
    return plan
''')
    # the archive importing the simulation: breaks the top layers and the simulation's apartness
    _append(tmp_path / "archive" / "config.py", '''
def _simulation():
    import simulation.pools
    return simulation.pools
''')
    # database code in calib
    _append(tmp_path / "calib" / "errors.py", '''
def _database():
    import sqlalchemy
    return sqlalchemy
''')
    # the old tasks cycle: tasks.app -> tasks.jobs -> tasks.dispatch -> tasks.app
    _append(tmp_path / "tasks" / "app.py", '''
def _tasks():
    from tasks import jobs
    return jobs
''')
    res = lint_imports(tmp_path)
    assert res.returncode != 0, res.stdout + res.stderr
    for name in CONTRACTS:
        assert f"{name} BROKEN" in res.stdout, res.stdout
    for culprit in ("archive.catalog.queries -> archive.reprocessing.planner", "archive.config -> simulation.pools",
                    "calib.errors -> sqlalchemy",
                    "No cycles are allowed in archive.", "No cycles are allowed in tasks."):
        assert culprit in res.stdout, res.stdout
