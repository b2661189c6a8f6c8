"""The helm binary, from the same build as the test control plane (hack/controlplane/build.sh, cached)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def helm() -> Path:
    result = subprocess.run(["bash", str(REPO / "hack" / "controlplane" / "build.sh")], capture_output=True, text=True,
                            timeout=3 * 3600, check=False)
    if result.returncode != 0:
        pytest.fail(f"hack/controlplane/build.sh failed:\n{result.stderr[-3000:]}", pytrace=False)
    return Path(result.stdout.strip().splitlines()[-1]) / "helm"
