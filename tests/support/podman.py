"""The images as built: podman with the project's containers.conf, and the session fixture that builds the
operator image with hack/images/build.sh (the same command `make test` runs first, so in CI it is a layer-cache
hit). podman missing, or a build that fails, fails the tests that need the image: never a reason to skip them
(`make operator-image` installs podman from Debian and builds it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.setup_scripts import run_setup_script

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "hack" / "images" / "build.sh"
CONTAINERS_CONF = REPO / "hack" / "images" / "containers.conf"


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """`podman args…` with the project's containers.conf (runc, limits of open files and processes), output captured."""
    result = subprocess.run(["podman", *args], env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


@dataclass(frozen=True)
class BuiltImage:
    """An image in podman's storage, with the parts of its config a pod's container inherits."""

    reference: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    user: str
    size_bytes: int

    @classmethod
    def inspect(cls, reference: str) -> BuiltImage:
        (image,) = json.loads(podman("image", "inspect", reference).stdout)
        config = image["Config"]
        return cls(reference, tuple(config.get("Entrypoint") or ()), tuple(config.get("Cmd") or ()),
                   config.get("User", ""), int(image["Size"]))


def build_image(request: pytest.FixtureRequest, name: str) -> BuiltImage:
    """hack/images/build.sh <name> (its progress shown live)."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: `make operator-image` installs it (Debian's podman, mmdebstrap, runc) "
                    "and builds the image; tests that run the image never skip", pytrace=False)
    stdout = run_setup_script(request, BUILD_SCRIPT, name)
    return BuiltImage.inspect(stdout.split()[-1])


@pytest.fixture(scope="session")
def operator_image(request) -> BuiltImage:
    """The operator image built from images/operator.Dockerfile (on the stand-in base where no registry is reachable)."""
    return build_image(request, "operator")
