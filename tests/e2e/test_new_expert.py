"""A new Expert arriving for a search's selector starts the next epoch, seeded with the elite, and
publishes the next MergedModel version beside the first."""

from __future__ import annotations

import json

import pytest

from .helpers import (
    FIT_KEY,
    GROUP_VERSION,
    SEARCH_TIMEOUT,
    condition,
    eventually,
    events,
    finished,
    history,
    nano_search,
    status_of,
)


def expert(name: str, namespace: str, zoo, family: str) -> dict:
    return {"apiVersion": GROUP_VERSION, "kind": "Expert",
            "metadata": {"name": name, "namespace": namespace, "labels": {"family": family}},
            "spec": {"uri": f"file://{zoo.experts[name]}", "baseModel": f"file://{zoo.base}"}}


def exported(kube, namespace: str, name: str, version: int):
    model = kube.get("MergedModel", namespace, name)
    status = (model or {}).get("status") or {}
    return status.get("phase") == "Ready" and status.get("version") == version and model


def test_a_new_expert_starts_a_seeded_epoch_and_a_new_merged_model_version(kube, namespace, zoo, fit_tasks, published):
    family = f"nano-{namespace}"
    for name in ("add", "rev"):
        kube.create(expert(name, namespace, zoo, family))
    kube.create(nano_search("growing", namespace, zoo, fit_tasks, experts=(), generations=1, held_out=False,
                            expertSelector={"matchLabels": {"family": family}}))
    first = finished(kube, namespace, "growing")
    assert first["phase"] == "Succeeded" and first["epoch"] == 1, first
    v1 = eventually(lambda: exported(kube, namespace, "growing", 1), "MergedModel version 1", SEARCH_TIMEOUT)

    kube.create(expert("spell", namespace, zoo, family))

    eventually(lambda: status_of(kube, namespace, "growing").get("epoch") == 2, "epoch 2 to start")
    second = finished(kube, namespace, "growing")
    v2 = eventually(lambda: exported(kube, namespace, "growing", 2), "MergedModel version 2", SEARCH_TIMEOUT)

    assert second["phase"] == "Succeeded" and condition(second, "Ready")["status"] == "True", second
    assert (second["evaluations"], second["round"]) == (6, 2)  # counters go on across epochs
    started = [e["message"] for e in events(kube, namespace, "growing", "MergeSearch") if e["reason"] == "EpochStarted"]
    assert len(started) == 2 and "experts changed (+spell)" in started[1] and "seeded with the best recipe" in started[1]
    epoch_two = kube.get("ConfigMap", namespace, "growing-e2")
    assert json.loads(epoch_two["data"]["seeds.json"]) == [first["best"]["recipe"]]
    # The elite is epoch 2's first candidate: the same merge with the new expert at weight 0, the same score.
    elite = next(e for e in history(kube, namespace, "growing", epoch=2) if e["type"] == "result")
    asks = next(e for e in history(kube, namespace, "growing", epoch=2) if e["type"] == "ask")
    assert elite["id"] == asks["ids"][0]
    assert elite["scores"][FIT_KEY] == pytest.approx(float(first["best"]["scores"][FIT_KEY]), rel=1e-6)
    assert float(second["best"]["scores"][FIT_KEY]) <= float(first["best"]["scores"][FIT_KEY])

    assert v2["spec"]["recipe"] == second["best"]["recipe"]
    assert [e["name"] for e in v2["spec"]["recipe"]["experts"]] == ["add", "rev", "spell"]
    assert {e["name"] for e in v2["status"]["lineage"]} == {"base", "add", "rev", "spell"}
    assert v1["status"]["outputUri"].endswith("/v1") and v2["status"]["outputUri"].endswith("/v2")
    for version in ("v1", "v2"):  # a new version never overwrites the one a server may be reading
        assert (published / namespace / "growing" / version / "config.json").exists()
    assert [e["reason"] for e in events(kube, namespace, "growing", "MergedModel")].count("Exported") == 2
    assert all(status_of(kube, namespace, n, "Expert")["compatible"] is True for n in ("add", "rev", "spell"))
