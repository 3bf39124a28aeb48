"""The type checker over the core library and the shared service layer, held to a recorded
baseline that may only shrink (tests/mypy_baseline.json: errors per file when checking began).

A file with more errors than its baseline fails the test with the new errors listed; a file with
fewer also fails, asking for the baseline to be shrunk (``python tests/test_typecheck.py``
rewrites it), so a fixed error cannot silently come back. mypy's settings are in pyproject.toml
(``[tool.mypy]``: heavy third-party packages are not followed, which keeps a cold run ~20 s).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BASELINE = Path(__file__).with_name("mypy_baseline.json")
CHECKED = ("ml", "service")
ERROR = re.compile(r"^(?P<path>[^:\s]+\.py):\d+:(?:\d+:)? error: ")


def mypy_errors() -> tuple[Counter[str], list[str]]:
    """Errors per file and the error lines, from one mypy run over CHECKED."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", *CHECKED, "--no-error-summary", "--no-pretty",
         "--show-error-codes"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"mypy could not run ({proc.returncode}): {proc.stderr[-2000:]}")
    lines = [line for line in proc.stdout.splitlines() if ERROR.match(line)]
    return Counter(ERROR.match(line)["path"] for line in lines), lines


def test_type_errors_never_grow_past_the_baseline():
    pytest.importorskip("mypy", reason="mypy is a test dependency: pip install -e '.[test]'")
    counts, lines = mypy_errors()
    baseline: dict[str, int] = json.loads(BASELINE.read_text())
    grown = {path: (baseline.get(path, 0), n) for path, n in counts.items()
             if n > baseline.get(path, 0)}
    new_errors = [line for line in lines if line.split(":", 1)[0] in grown]
    assert not grown, ("type errors beyond the baseline (file: baseline -> now):\n"
                       + "\n".join(f"  {p}: {b} -> {n}" for p, (b, n) in sorted(grown.items()))
                       + "\n" + "\n".join(new_errors[:60]))
    shrunk = {path: (b, counts.get(path, 0)) for path, b in baseline.items()
              if counts.get(path, 0) < b}
    assert not shrunk, ("fewer type errors than the baseline: shrink it with "
                        "`python tests/test_typecheck.py` (file: baseline -> now): "
                        + ", ".join(f"{p}: {b} -> {n}" for p, (b, n) in sorted(shrunk.items())))


if __name__ == "__main__":
    found, _ = mypy_errors()
    BASELINE.write_text(json.dumps(dict(sorted(found.items())), indent=1) + "\n")
    print(f"{sum(found.values())} errors in {len(found)} files -> {BASELINE}")
