"""Evaluation Jobs whose pods cannot start, against a real API server (the test plays the kubelet's status)."""

from __future__ import annotations

import pytest

from evomerge.k8s import evaluation_jobs
from evomerge.k8s.evaluation_jobs import EvaluationJobs, JobRefused
from evomerge.k8s.jobs import ACTIVE, job_state
from evomerge.k8s.render_search import render_namespace_accounts
from evomerge.k8s.settings import ClusterSettings
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.spec.merge_search import MergeSearchSpec
from test_operator import eventually, kube, search_body  # noqa: F401 (kube: the fixture)

RECIPE = MergeRecipe("linear", None, (ExpertWeights("e0", "file:///m/e0", {"weight": {"all": 1.0}}),
                                      ExpertWeights("e1", "file:///m/e1", {"weight": {"all": 0.0}})), ("all",), {})


def waiting(kube, pod: dict, reason: str, message: str) -> None:
    """What the kubelet reports while a container cannot start."""
    status = {"phase": "Pending", "containerStatuses": [{"name": "score", "image": "x", "imageID": "", "ready": False,
                                                         "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}]}
    kube.patch("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"], {"status": status}, subresource="status")


def unschedulable(kube, pod: dict) -> None:
    status = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                  "message": "0/3 nodes have nvidia.com/gpu"}]}
    kube.patch("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"], {"status": status}, subresource="status")


def backend(kube, namespace: str, timeout_seconds: int = 3600, **evaluation) -> EvaluationJobs:
    search = kube.create(search_body("jp", namespace, evaluation={"timeoutSeconds": timeout_seconds, **evaluation}))
    spec = MergeSearchSpec.model_validate(search["spec"])
    for account in render_namespace_accounts(namespace, ClusterSettings()):  # pods of a missing account are refused
        kube.create(account)
    return EvaluationJobs(kube, search, 1, spec, ClusterSettings(), search)


@pytest.fixture(autouse=True)
def check_every_wait(monkeypatch):
    monkeypatch.setattr(evaluation_jobs, "STUCK_CHECK_SECONDS", 0.0)


def pod_of(kube, namespace: str, job: str) -> dict:
    return eventually(lambda: (kube.list("Pod", namespace, f"batch.kubernetes.io/job-name={job}") or [None])[0], f"the pod of {job}")


def test_an_image_that_cannot_be_pulled_fails_its_job_after_the_grace_naming_the_cause(kube, namespace, monkeypatch):
    monkeypatch.setattr(evaluation_jobs, "STUCK_GRACE_SECONDS", 3600.0)
    jobs = backend(kube, namespace)
    jobs.create("jp-e1-c000000-1", [("c000000", RECIPE)])
    waiting(kube, pod_of(kube, namespace, "jp-e1-c000000-1"), "ImagePullBackOff", 'Back-off pulling image "registry.invalid/w:1"')

    assert jobs.wait({"jp-e1-c000000-1"}, 1) == []  # within the grace: a registry hiccup may pass

    monkeypatch.setattr(evaluation_jobs, "STUCK_GRACE_SECONDS", 0.0)
    (outcome,) = jobs.wait({"jp-e1-c000000-1"}, 5)
    assert (outcome.name, outcome.succeeded, outcome.reason) == ("jp-e1-c000000-1", False, "ImagePullBackOff")
    assert "container score of pod" in outcome.message and "registry.invalid/w:1" in outcome.message
    assert "fix the image" in outcome.message
    job = kube.get("Job", namespace, "jp-e1-c000000-1")
    assert job is None or job["metadata"].get("deletionTimestamp")
    assert jobs.wait({"jp-e1-c000000-1"}, 1) == []  # reported once
    (event,) = [e for e in kube.list("Event", namespace) if e["reason"] == "EvaluationStuck"]
    assert event["type"] == "Warning" and "registry.invalid/w:1" in event["message"]


def test_an_unschedulable_pod_waits_for_a_node_and_a_deadline_then_names_the_scheduler(kube, namespace, monkeypatch):
    monkeypatch.setattr(evaluation_jobs, "STUCK_GRACE_SECONDS", 0.0)
    jobs = backend(kube, namespace, timeout_seconds=10)  # the Job controller fails it after 10 s and deletes its pod
    jobs.create("jp-e1-c000001-1", [("c000001", RECIPE)])
    unschedulable(kube, pod_of(kube, namespace, "jp-e1-c000001-1"))

    assert jobs.wait({"jp-e1-c000001-1"}, 1) == []  # an autoscaler may yet add a node

    (outcome,) = jobs.wait({"jp-e1-c000001-1"}, 30)
    assert (outcome.succeeded, outcome.reason) == (False, "DeadlineExceeded")
    assert "cannot be scheduled: 0/3 nodes have nvidia.com/gpu" in outcome.message


def test_a_job_the_api_server_refuses_is_one_line_naming_the_pod_field_and_the_spec_field(kube, namespace):
    """A request above its limit passes admission of the MergeSearch (each quantity is valid) but not of the
    Job: the controller says so in one line, the cause first, instead of crashing on the API's error."""
    jobs = backend(kube, namespace, resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}})

    with pytest.raises(JobRefused) as refused:
        jobs.create("jp-e1-c000000-1", [("c000000", RECIPE)])

    message = str(refused.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"the API server refused evaluation Job {namespace}/jp-e1-c000000-1: spec.template.spec.containers[0]"
                              ".resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit")
    assert message.endswith("— fix spec.evaluation.resources")


def test_queued_evaluation_jobs_are_counted_in_status_and_their_deadline_starts_at_kueues_admission(kube, namespace, cluster_queue,
                                                                                                  kueue):
    """Kueue's own controller admits one of two Jobs at a time (the quota holds one CPU, each asks for one). The
    admitted Job's deadline (10 s) runs out while its pod never starts (no node here); the queued Job, created at the same
    moment, outlives that deadline untouched, and is started, with its own 10 s, only once Kueue admits it into the
    quota the first one freed."""
    kueue.quota(cluster_queue, cpu="1", memory="4Gi")
    jobs = backend(kube, namespace, timeout_seconds=10, queueName=cluster_queue, resources={"requests": {"cpu": "1", "memory": "1Gi"}})
    names = {"jp-e1-c000000-1", "jp-e1-c000001-1"}
    for name in sorted(names):
        jobs.create(name, [(name.split("-")[2], RECIPE)])
    outcomes = []

    def queued() -> int | None:
        outcomes.extend(jobs.wait(names, 1))
        return (kube.get("MergeSearch", namespace, "jp").get("status") or {}).get("queuedEvaluations")

    eventually(lambda: queued() == 1, "status.queuedEvaluations to count the Job Kueue cannot admit yet")
    first, second = sorted((kube.get("Job", namespace, n) for n in names), key=lambda j: bool(j["spec"].get("suspend")))
    assert first["spec"]["suspend"] is False and second["spec"]["suspend"] is True
    assert not (second.get("status") or {}).get("startTime")
    assert any(second["metadata"]["name"] in e["message"] and "timeoutSeconds counts from it" in e["message"]
               for e in kube.list("Event", namespace) if e["reason"] == "Queued")

    eventually(lambda: queued() is not None and outcomes, "the admitted Job's deadline to run out", timeout=60)
    assert (outcomes[0].name, outcomes[0].succeeded, outcomes[0].reason) == (first["metadata"]["name"], False, "DeadlineExceeded")
    waited = kube.get("Job", namespace, second["metadata"]["name"])
    assert waited["spec"]["suspend"] is True and job_state(waited).phase == ACTIVE  # as old as the first, and not failed

    eventually(lambda: queued() == 0, "Kueue to admit the second Job into the freed quota")
    started = kube.get("Job", namespace, second["metadata"]["name"])
    failed = kube.get("Job", namespace, first["metadata"]["name"])
    failed_at = next(c["lastTransitionTime"] for c in failed["status"]["conditions"] if c["type"] == "Failed")
    assert started["status"]["startTime"] >= failed_at > started["metadata"]["creationTimestamp"]
