"""The layering of docs/architecture.md and the lint rules, checked with the suite: import-linter
(the contracts in pyproject.toml: package layers, the core's layers, no cycles) and ruff (the
small rule set in pyproject.toml). Both fail on any upward import, cycle or lint error."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), cwd=REPO, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold():
    if shutil.which("lint-imports") is None:
        pytest.fail("import-linter is a test dependency: pip install -e '.[test]'")
    proc = _run("lint-imports", "--no-cache")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "broken" in proc.stdout and " 0 broken" in proc.stdout


def test_the_core_never_imports_the_service():
    """Belt and braces for the first contract: importing the whole core loads no service
    module (the entry point composes them; the core's CLI works alone)."""
    code = ("import sys, ml.cli, ml.evaluation.cli, ml.train.cli, ml.datasets.cli; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('service', 'app', 'worker', 'nas_surrogate')]; print(bad); "
            "raise SystemExit(1 if bad else 0)")
    proc = _run(sys.executable, "-c", code)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def test_ruff_passes():
    proc = _run(sys.executable, "-m", "ruff", "check", ".")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
