"""kstatus — the status library of Flux and `helm --wait` (sigs.k8s.io/cli-utils, built from its Go module by
hack/kstatus/build.sh) — reads every phase of evomerge's resources right: a running search is InProgress (a healthy
wait), a finished one Current, one that cannot go on without a change — an invalid spec, a pod that cannot start, a
failed or suspended search — Failed, so a waiting sync stops instead of waiting for ever (kstatus reads a Ready=False
without Stalled as InProgress).

Running, Suspended, an invalid spec and an unobserved edit come from the operator on the real control plane;
the phases that need a controller to finish or a pod to fail (Succeeded, a failed search, a stuck pod, a MergedModel,
an Expert) from the same planners the operator applies, fed the observations those events produce."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest

from evomerge.k8s.reconcile_expert import plan_expert_status
from evomerge.k8s.reconcile_search import plan_search
from tests.k8s.test_operator import eventually, kube, operator, search_body, status_of  # noqa: F401 (fixtures)
from tests.k8s.test_reconcile_search import NOW, RECIPE, SETTINGS, applied, job, search, started

BUILD = Path(__file__).resolve().parents[2] / "hack" / "kstatus" / "build.sh"


@pytest.fixture(scope="session")
def kstatus() -> Path:
    result = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"{BUILD} failed:\n{result.stderr[-3000:]}", pytrace=False)
    return Path(result.stdout.strip().splitlines()[-1])


def verdicts(kstatus: Path, *objects: dict) -> list[str]:
    result = subprocess.run([str(kstatus)], input=json.dumps(list(objects)), capture_output=True, text=True, check=True)
    return [json.loads(line)["status"] for line in result.stdout.splitlines()]


def test_the_operators_live_phases(kstatus, kube, operator, namespace):  # noqa: F811
    kube.create(search_body("running", namespace))
    kube.create(search_body("invalid", namespace, experts=[], expertSelector={"matchLabels": {"family": "none"}}))
    kube.create(search_body("paused", namespace))
    kube.patch("MergeSearch", namespace, "paused", {"spec": {"suspend": True}})
    eventually(lambda: status_of(kube, namespace, "running").get("phase") == "Running", "the search to run")
    eventually(lambda: status_of(kube, namespace, "invalid").get("phase") == "Failed", "the invalid search to fail")
    eventually(lambda: status_of(kube, namespace, "paused").get("phase") == "Suspended", "the search to be suspended")
    running, invalid, paused = (kube.get("MergeSearch", namespace, n) for n in ("running", "invalid", "paused"))
    edited = copy.deepcopy(running)
    edited["metadata"]["generation"] += 1  # an edit the operator has not observed yet

    assert verdicts(kstatus, running, invalid, paused, edited) == ["InProgress", "Failed", "Failed", "InProgress"]
    assert [c["reason"] for c in paused["status"]["conditions"] if c["type"] == "Stalled"] == ["Suspended"]


def test_the_phases_a_controller_or_a_pod_brings(kstatus):
    body, observed = started(search())
    running = plan_search(body, observed, SETTINGS, NOW)
    stuck_observed = copy.copy(observed)
    stuck_observed.controller_stuck = ("Unschedulable", 'pod jp-1 cannot be scheduled: persistentvolumeclaim "cache" not found')
    stuck = plan_search(body, stuck_observed, SETTINGS, NOW)
    done = copy.deepcopy(body)
    done["status"].update(best={"candidate": "c1", "score": "0.8", "scores": {"t/acc": "0.8"}, "recipe": RECIPE}, evaluations=12)
    finished = copy.copy(observed)
    finished.controller_jobs = [job(observed.controller_jobs[0], [{"type": "Complete", "status": "True"}])]
    succeeded = plan_search(done, finished, SETTINGS, NOW)
    failed_observed = copy.copy(observed)
    failed_observed.controller_jobs = [job(observed.controller_jobs[0], [{"type": "Failed", "status": "True"}])]
    failed_observed.controller_message = "SearchFailed: 11 evaluations failed (evaluation.maxFailedEvaluations is 10)"
    failed = plan_search(body, failed_observed, SETTINGS, NOW)
    phases = [applied(body, plan)["status"]["phase"] for plan in (running, stuck, succeeded, failed)]
    assert phases == ["Running", "Pending", "Succeeded", "Failed"]

    searches = [applied(body, running), applied(body, stuck), applied(done, succeeded), applied(body, failed)]
    assert verdicts(kstatus, *searches) == ["InProgress", "Failed", "Current", "Failed"]


def test_an_experts_compatibility(kstatus):
    expert = {"apiVersion": "evomerge.dev/v1alpha1", "kind": "Expert",
              "metadata": {"name": "e", "namespace": "ns", "generation": 1, "labels": {"family": "x"}},
              "spec": {"uri": "pvc://m/e", "baseModel": "pvc://m/other"}}
    selecting = search(expertSelector={"matchLabels": {"family": "x"}})
    compatible = {**expert, "spec": {"uri": "pvc://m/e"}}
    compatible["status"] = plan_expert_status(compatible, [selecting], NOW)
    mismatched = {**expert, "status": plan_expert_status(expert, [selecting], NOW)}
    assert (compatible["status"]["compatible"], mismatched["status"]["compatible"]) == (True, False)
    assert verdicts(kstatus, compatible, mismatched) == ["Current", "Failed"]
