"""mypy is part of the suite, so CI fails when the package stops type-checking (config: pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_is_clean() -> None:
    pytest.importorskip("mypy", reason="mypy is not installed: install the test extras (pip install '.[test]')")
    res = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"mypy failed (exit {res.returncode}):\n{res.stdout}{res.stderr}"
