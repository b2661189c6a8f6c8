"""The layering of DESIGN.md §2 and the README's architecture section, enforced by import-linter on every run."""

from __future__ import annotations

import configparser
import re
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


def _contracts() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(REPO / ".importlinter")
    return parser


def _linted_layers() -> list[tuple[str, ...]]:
    lines = _contracts()["importlinter:contract:layers"]["layers"].split("\n")
    return [tuple(part.strip().removeprefix("evomerge.") for part in line.split("|")) for line in lines if line.strip()]


def test_the_readmes_architecture_draws_the_layers_the_contract_checks():
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Architecture", 1)[1].split("```", 2)[1]
    drawn = [tuple(match.group(1).split(" | ")) for line in block.splitlines()
             if (match := re.match(r"^([a-z0-9]+(?: \| [a-z0-9]+)*)\s{2,}", line))]
    assert drawn == _linted_layers()


def test_nothing_below_k8s_may_import_the_cluster_libraries():
    below = [name for layer in _linted_layers()[2:] for name in layer]
    sources = _contracts()["importlinter:contract:no-cluster-below-k8s"]["source_modules"].split()
    assert _linted_layers()[1] == ("k8s",) and sorted(s.removeprefix("evomerge.") for s in sources) == sorted(below)
