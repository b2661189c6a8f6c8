"""One real run of the four-layer tiny family (tests/conftest.py's deep_family)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml



@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, deep_family, tiny_tasks) -> tuple[Path, dict]:
    """A real `evomerge run` (ties, attention/MLP split, held-out split) and its --json summary."""
    root = tmp_path_factory.mktemp("report_run")
    spec = {
        "apiVersion": "evomerge.dev/v1alpha1", "kind": "MergeSearch", "metadata": {"name": "card-run"},
        "spec": {
            "baseModel": {"uri": str(deep_family["base"])},
            "experts": [{"name": "e0", "uri": str(deep_family["expert0"])}, {"name": "e1", "uri": str(deep_family["expert1"])}],
            "merge": {"method": "ties", "granularity": "layerGroups", "layerGroups": 2, "splitModules": True,
                      "evolve": ["weight", "density"]},
            "search": {"algorithm": "random", "populationSize": 2, "maxGenerations": 2, "seed": 5},
            "objectives": [{"task": "tiny_colors", "metric": "acc", "limit": 8}],
            "heldOut": [{"task": "tiny_colors", "metric": "acc"}],
            "evaluation": {"includePaths": [str(tiny_tasks)], "device": "cpu"},
        },
    }
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = evomerge("run", str(root / "spec.yaml"), "--run-dir", str(root / "run"), "--json")
    assert result.returncode == 0, result.stderr
    return root / "run", json.loads(result.stdout)


def evomerge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evomerge.cli.main", *args], capture_output=True, text=True, timeout=600)
