"""The promotion gate on the real control plane: a new expert that does not help leaves the published
MergedModel version and its Deployment untouched (NotPromoted, naming the p-value); the held-back version is
published by hand with the annotation; a new expert that helps is promoted.

The nano zoo's `add` expert is the one that lowers the bits per byte of the `add` prompts; `upper` does nothing
for them. One evaluation per epoch (search.maxEvaluations: 1) makes epoch 2's best the seeded elite — version
1's merge with `upper` at weight 0, the very same checkpoint — so the gate sees a new expert that adds nothing.
Epoch 3 adds `add` with a seed recipe that uses it, and two evaluations: the elite and the seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from .helpers import SEARCH_TIMEOUT, condition, eventually, events, finished, nano_search, status_of

OBJECTIVE = {"task": "nano_add", "metric": "bits_per_byte", "direction": "minimize", "limit": 12}
HELD_OUT = {"task": "nano_add_heldout", "metric": "bits_per_byte", "direction": "minimize", "limit": 12}


@pytest.fixture(scope="module")
def add_tasks(zoo, tmp_path_factory) -> Path:
    """Bits per byte of the zoo's `add` prompts, search and held-out splits (per-item values: lm-eval's
    (log-likelihood, bytes) pairs, so the gate's test is the paired bootstrap)."""
    directory = tmp_path_factory.mktemp("add_tasks")
    for task, split in (("nano_add", "search"), ("nano_add_heldout", "heldout")):
        (directory / f"{task}.yaml").write_text(yaml.safe_dump({
            "task": task, "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(zoo.tasks_dir / f"add_{split}.jsonl")}},
            "test_split": "test", "output_type": "loglikelihood_rolling", "doc_to_text": "",
            "doc_to_target": "{{prompt}}{{answer}}",
            "metric_list": [{"metric": "bits_per_byte", "aggregation": "bits_per_byte", "higher_is_better": False}],
            "metadata": {"version": 1.0},
        }, sort_keys=False))
    return directory


def model_status(kube, namespace: str, name: str) -> dict:
    return status_of(kube, namespace, name, "MergedModel")


def judged(kube, namespace: str, name: str, version: int) -> dict:
    """The MergedModel's status once the gate has decided about `version`."""
    return eventually(lambda: (model_status(kube, namespace, name).get("promotion") or {}).get("version") == version
                      and model_status(kube, namespace, name), f"the promotion gate's decision on version {version}",
                      SEARCH_TIMEOUT, detail=lambda: json.dumps(model_status(kube, namespace, name), indent=1)[-3000:])


def deployment(kube, namespace: str, name: str) -> dict:
    return kube.get("Deployment", namespace, f"{name}-serve")


def served_version(kube, namespace: str, name: str) -> str | None:
    found = deployment(kube, namespace, name)
    return found and found["spec"]["template"]["metadata"]["annotations"]["evomerge.dev/version"]


def next_epoch(kube, namespace: str, name: str, epoch: int) -> dict:
    eventually(lambda: status_of(kube, namespace, name).get("epoch") == epoch, f"epoch {epoch} to start")
    status = finished(kube, namespace, name)
    assert status["phase"] == "Succeeded" and status["epoch"] == epoch, status
    return status


def test_only_a_version_that_is_really_better_replaces_the_published_one(kube, namespace, zoo, add_tasks, published):
    name = "gate"
    experts = [{"name": e, "uri": f"file://{zoo.experts[e]}"} for e in ("rev", "spell")]
    kube.create(nano_search(name, namespace, zoo, add_tasks, experts=("rev", "spell"), population=2, generations=1,
                            objectives=[OBJECTIVE], heldOut=[HELD_OUT], search={"maxEvaluations": 1},
                            storage={"output": {"compareReferences": False}}))
    assert finished(kube, namespace, name)["phase"] == "Succeeded"
    first = judged(kube, namespace, name, 1)
    assert first["version"] == 1 and first["phase"] == "Ready"
    assert (condition(first, "Promoted")["status"], condition(first, "Promoted")["reason"]) == ("True", "FirstVersion")
    kube.patch("MergedModel", namespace, name, {"spec": {"serving": {"enabled": True, "engine": "vllm", "replicas": 0}}})
    eventually(lambda: served_version(kube, namespace, name) == "1", "the Deployment serving version 1")
    served = deployment(kube, namespace, name)

    # A new expert that does not help: version 2 is the same merge with upper at weight 0.
    kube.patch("MergeSearch", namespace, name, {"spec": {"experts": experts + [{"name": "upper", "uri": f"file://{zoo.experts['upper']}"}]}})
    next_epoch(kube, namespace, name, 2)
    second = judged(kube, namespace, name, 2)

    assert (second["version"], second["outputUri"], second["phase"]) == (1, first["outputUri"], "Ready")
    promoted = condition(second, "Promoted")
    assert (promoted["status"], promoted["reason"]) == ("False", "NotPromoted")
    assert "p = 1 ≥ 0.05" in promoted["message"] and promoted["message"].endswith("kept version 1"), promoted
    candidate = second["candidate"]
    assert candidate["version"] == 2 and candidate["outputUri"].endswith("/v2")
    assert [e["name"] for e in candidate["recipe"]["experts"]] == ["rev", "spell", "upper"]
    assert set(candidate["recipe"]["experts"][2]["params"]["weight"].values()) == {0.0}
    decision = second["promotion"]
    assert decision["test"]["test"] == "bootstrap" and decision["test"]["items"] == 12 and float(decision["test"]["pValue"]) == 1.0
    assert decision["publishedHeldOut"] == candidate["scores"]["heldOut"]  # the same checkpoint, scored on the same items
    # Events go out from the operator's queue after the status patch (k8s/plan.EventQueue), so they may trail it.
    not_promoted = eventually(lambda: [e["message"] for e in events(kube, namespace, name, "MergedModel")
                                       if e["reason"] == "NotPromoted"], "the NotPromoted event")
    assert len(not_promoted) == 1 and "p = 1 ≥ 0.05" in not_promoted[0] and "evomerge.dev/promote=2" in not_promoted[0]
    now_served = deployment(kube, namespace, name)
    assert served_version(kube, namespace, name) == "1"  # the served Deployment is untouched
    assert now_served["metadata"]["generation"] == served["metadata"]["generation"]
    items = json.loads((published / namespace / name / "v2" / "evomerge_items.json").read_text())
    assert items["candidate"] == items["published"]  # the per-item results behind the test, both versions

    # Promoted by hand: the held-back version is published and served.
    kube.patch("MergedModel", namespace, name, {"metadata": {"annotations": {"evomerge.dev/promote": "2"}}})
    by_hand = eventually(lambda: model_status(kube, namespace, name).get("version") == 2 and model_status(kube, namespace, name),
                         "the manual promotion of version 2")
    assert condition(by_hand, "Promoted")["reason"] == "PromotedByHand" and not by_hand.get("candidate")
    assert by_hand["recipe"] == candidate["recipe"] and by_hand["outputUri"] == candidate["outputUri"]
    eventually(lambda: served_version(kube, namespace, name) == "2", "the Deployment to roll to version 2")

    # A new expert that helps: `add`, with a seed recipe using it; two evaluations, the elite and the seed.
    add = {"name": "add", "uri": f"file://{zoo.experts['add']}"}
    seed = {"mergekit": {"merge_method": "task_arithmetic", "base_model": str(zoo.base),
                         "models": [{"model": str(zoo.experts["add"]), "parameters": {"weight": 1.0}}]}}
    kube.patch("MergeSearch", namespace, name, {"spec": {
        "experts": experts + [{"name": "upper", "uri": f"file://{zoo.experts['upper']}"}, add],
        "search": {"maxEvaluations": 2, "seeds": [seed]}}})
    third_search = next_epoch(kube, namespace, name, 3)
    third = judged(kube, namespace, name, 3)

    assert third["version"] == 3 and third["outputUri"].endswith("/v3") and not third.get("candidate"), third
    promoted = condition(third, "Promoted")
    assert (promoted["status"], promoted["reason"]) == ("True", "Improved"), promoted
    assert promoted["message"].endswith("< 0.05: version 3 replaces version 2")
    test = third["promotion"]["test"]
    assert float(test["pValue"]) < 0.05 and float(test["candidate"]) > float(test["baseline"])
    assert float(third["scores"]["heldOut"]["nano_add_heldout/bits_per_byte"]) < float(by_hand["scores"]["heldOut"]["nano_add_heldout/bits_per_byte"])
    assert third["recipe"] == third_search["best"]["recipe"]
    eventually(lambda: served_version(kube, namespace, name) == "3", "the Deployment to roll to version 3")
    eventually(lambda: [e["reason"] for e in events(kube, namespace, name, "MergedModel")].count("Promoted") == 3,
               "three Promoted events")
