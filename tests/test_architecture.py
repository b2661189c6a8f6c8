"""The layering of DESIGN.md §2 and the README's architecture section, enforced by import-linter on every run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    assert lint.exists(), "import-linter is part of the test extra; reinstall with .[test]"
    result = subprocess.run([str(lint), "--config", str(REPO / ".importlinter")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken" in result.stdout


def test_no_module_is_named_operator():
    package = REPO / "operator" / "evomerge"
    offenders = [p for p in package.rglob("operator.py")] + [p for p in package.rglob("operator") if p.is_dir()]
    assert not offenders, f"'operator' is a stdlib module name: {offenders}"
