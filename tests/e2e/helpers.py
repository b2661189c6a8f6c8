"""Manifests and observations shared by the end-to-end tests."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from evomerge.k8s.client import Kube
from tests.support.zoo_tasks import FIT_KEY, FIT_TASK, HELD_OUT_KEY, HELD_OUT_TASK  # noqa: F401 - the e2e tests' names

GROUP_VERSION = "evomerge.dev/v1alpha1"
# Generous: evaluation pods are real processes on a 2-core machine shared with other work.
SEARCH_TIMEOUT = 420.0


def eventually(check: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.25,
               detail: Callable[[], Any] | None = None) -> Any:
    """The first truthy `check()`; the operator, the controllers and the node all act asynchronously.
    `detail()` is added to the failure message (the state that did not converge)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    shown = f"\n{detail()}" if detail is not None else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{shown}")


def nano_search(name: str, namespace: str, zoo, tasks: Path, *, algorithm: str = "random", population: int = 3,
                generations: int = 2, rounds: int = 1, seed: int = 7, experts: tuple[str, ...] = ("add", "rev"),
                held_out: bool = True, publish: bool = True, **spec: Any) -> dict:
    """A MergeSearch over the nano zoo with a tiny budget: one evaluation Job per generation by default."""
    body: dict[str, Any] = {
        "apiVersion": GROUP_VERSION,
        "kind": "MergeSearch",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "baseModel": {"uri": f"file://{zoo.base}"},
            "experts": [{"name": e, "uri": f"file://{zoo.experts[e]}"} for e in experts],
            "merge": {"method": "task_arithmetic", "bounds": {"weight": ["0", "1.5"]}},
            "search": {"algorithm": algorithm, "populationSize": population, "maxGenerations": generations, "rounds": rounds,
                       "seed": seed, "evogm": {"trainingSteps": 20, "hiddenDims": [16, 16]}},
            "objectives": [{"task": FIT_TASK, "metric": "bits_per_byte", "direction": "minimize", "limit": 12}],
            "evaluation": {"includePaths": [str(tasks)], "device": "cpu", "batchSize": 16,
                           "candidatesPerJob": population, "parallelism": 1},
        },
    }
    if held_out:
        body["spec"]["heldOut"] = [{"task": HELD_OUT_TASK, "metric": "bits_per_byte", "direction": "minimize", "limit": 12}]
    if publish:
        body["spec"]["storage"] = {"output": {"uri": f"pvc://published/{namespace}/{name}"}}
    return merge(body, {"spec": spec})


def merge(base: dict, change: dict) -> dict:
    """`base` with `change` merged in, recursively for mappings (lists are replaced)."""
    out = copy.deepcopy(base)
    for key, value in change.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else copy.deepcopy(value)
    return out


def status_of(kube: Kube, namespace: str, name: str, kind: str = "MergeSearch") -> dict:
    return (kube.get(kind, namespace, name) or {}).get("status") or {}


def condition(status: dict, type_: str) -> dict:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def events(kube: Kube, namespace: str, name: str, kind: str | None = None) -> list[dict]:
    """Events about one object, oldest first."""
    found = [e for e in kube.list("Event", namespace)
             if e["involvedObject"]["name"] == name and (kind is None or e["involvedObject"].get("kind") == kind)]
    return sorted(found, key=lambda e: e.get("firstTimestamp") or e.get("eventTime") or "")


def jobs(kube: Kube, namespace: str, component: str) -> list[dict]:
    return kube.list("Job", namespace, f"evomerge.dev/component={component}")


def finished(kube: Kube, namespace: str, name: str, timeout: float = SEARCH_TIMEOUT) -> dict:
    """The search's status once it is Succeeded or Failed."""
    return eventually(lambda: status_of(kube, namespace, name).get("phase") in ("Succeeded", "Failed")
                      and status_of(kube, namespace, name), f"MergeSearch {namespace}/{name} to finish", timeout,
                      detail=lambda: json.dumps(status_of(kube, namespace, name), indent=1)[-3000:])


def history(kube: Kube, namespace: str, name: str, epoch: int | None = None) -> list[dict]:
    """The search's replayable history (one epoch's, or every epoch's in order), as the controller wrote it."""
    selector = f"evomerge.dev/component=history,evomerge.dev/search={name}"
    chunks = kube.list("ConfigMap", namespace, selector + (f",evomerge.dev/epoch={epoch}" if epoch else ""))
    chunks.sort(key=lambda c: (int(c["metadata"]["labels"]["evomerge.dev/epoch"]), int(c["metadata"]["labels"]["evomerge.dev/chunk"])))
    return [json.loads(chunk["data"][key]) for chunk in chunks for key in sorted(chunk.get("data") or {})]


def results(kube: Kube, namespace: str, name: str) -> dict[str, dict]:
    """Result events of the history by candidate id."""
    return {e["id"]: e for e in history(kube, namespace, name) if e["type"] == "result"}
