"""The README's cluster quick start as a platform engineer runs it, on the chart the session installed with the
quick start's own `helm install` line (conftest.release): its example manifest applied with `kubectl apply`, watched
with `kubectl get ms -w` under the columns the README shows, and a published MergedModel read with its
`kubectl get mergedmodel … -o yaml`. The image build is tests/images' part, the push no test's."""

from __future__ import annotations

import queue
import subprocess
import threading

import yaml

from .conftest import QUICK_START
from .helpers import eventually, status_of


def kubectl(control_plane, command: tuple[str, ...], *extra: str) -> subprocess.CompletedProcess:
    """A quick start command as written, as the cluster admin, with `extra` arguments (the test's namespace)."""
    assert command[0] == "kubectl"
    return subprocess.run(["kubectl", "--kubeconfig", str(control_plane.kubeconfig), *command[1:], *extra],
                          capture_output=True, text=True, timeout=120)


def test_the_example_search_is_applied_and_watched_as_the_quick_start_says(control_plane, kube, operator, namespace):
    example = yaml.safe_load(QUICK_START.example.read_text())
    watch_command = QUICK_START.only("kubectl", "get", "ms", "-w")
    watch = subprocess.Popen(["kubectl", "--kubeconfig", str(control_plane.kubeconfig), *watch_command[1:], "-n", namespace],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in watch.stdout], daemon=True).start()
    seen: list[str] = []

    def row_with_phase() -> list[str] | None:
        while not lines.empty():
            seen.append(lines.get())
        phase = status_of(kube, namespace, example["metadata"]["name"]).get("phase")
        rows = [line.split() for line in seen[1:]]
        return phase and next((row for row in rows if row[:2] == [example["metadata"]["name"], phase]), None)

    try:
        applied = kubectl(control_plane, QUICK_START.only("kubectl", "apply"), "-n", namespace)
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.strip() == f"mergesearch.evomerge.dev/{example['metadata']['name']} created"

        row = eventually(row_with_phase, "`kubectl get ms -w` to show the example's search reconciled", timeout=90,
                         detail=lambda: "\n".join(seen))
    finally:
        watch.terminate()
        watch.wait(10)

    shown = QUICK_START.comments[QUICK_START.commands.index(watch_command)].split()
    assert seen[0].split() == shown  # the columns the README promises, in its order
    assert status_of(kube, namespace, example["metadata"]["name"])["observedGeneration"] == 1
    assert row[0] == example["metadata"]["name"]


def test_the_published_merged_model_reads_as_the_quick_start_says(control_plane, chain):
    example = yaml.safe_load(QUICK_START.example.read_text())
    command = QUICK_START.only("kubectl", "get", "mergedmodel")
    assert command[3] == example["metadata"]["name"]  # the quick start reads the model its example search publishes
    run = chain["evogm"]

    read = kubectl(control_plane, (*command[:3], run.name, *command[4:]), "-n", run.namespace)

    assert read.returncode == 0, read.stderr
    model = yaml.safe_load(read.stdout)
    assert model["status"]["phase"] == "Ready" and model["status"]["outputUri"] == run.model["status"]["outputUri"]
    assert model["status"]["recipe"] and model["status"]["lineage"] and model["status"]["scores"]
