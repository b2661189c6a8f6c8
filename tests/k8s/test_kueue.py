"""A search with a Kueue queue: every Job joins the LocalQueue created suspended, the search waits as Queued (a
healthy, progressing state: kstatus InProgress), and runs once admitted.

Kueue's own controller is not part of the test control plane; this test plays its admission the way Kueue does it
(it clears the Job's spec.suspend), and the real Job controller then starts the Job and sets status.startTime, from
which activeDeadlineSeconds (evaluation.timeoutSeconds) counts."""

from __future__ import annotations

from evomerge.k8s.naming import KUEUE_QUEUE_LABEL
from tests.k8s.test_kstatus import kstatus, verdicts  # noqa: F401 (fixture)
from tests.k8s.test_operator import (  # noqa: F401 (fixtures)
    condition, controller_jobs, eventually, kube, operator, reasons, search_body, status_of,
)


def test_a_queued_search_waits_as_queued_and_runs_when_admitted(kstatus, kube, operator, namespace):  # noqa: F811
    kube.create(search_body("queued", namespace, evaluation={"parallelism": 2, "candidatesPerJob": 2, "queueName": "gpu-team-a"}))

    (job,) = eventually(lambda: controller_jobs(kube, namespace), "the controller Job")
    assert job["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "gpu-team-a" and job["spec"]["suspend"] is True
    status = eventually(lambda: status_of(kube, namespace, "queued").get("phase") == "Queued" and status_of(kube, namespace, "queued"),
                        "the search to wait as Queued")
    assert (condition(status, "Progressing")["status"], condition(status, "Progressing")["reason"]) == ("True", "Queued")
    assert "gpu-team-a" in condition(status, "Ready")["message"] and condition(status, "Degraded")["status"] == "False"
    assert verdicts(kstatus, kube.get("MergeSearch", namespace, "queued")) == ["InProgress"]
    eventually(lambda: "Queued" in reasons(kube, namespace, "queued"), "the Queued event")
    assert not (kube.get("Job", namespace, job["metadata"]["name"]).get("status") or {}).get("startTime")  # no deadline running

    kube.patch("Job", namespace, job["metadata"]["name"], {"spec": {"suspend": False}})  # Kueue admits it

    eventually(lambda: (kube.get("Job", namespace, job["metadata"]["name"]).get("status") or {}).get("startTime"),
               "the Job controller to start the admitted Job")
    eventually(lambda: status_of(kube, namespace, "queued").get("phase") == "Running", "the search to run")


def test_evaluation_jobs_join_the_searchs_queue_or_the_charts():
    from evomerge.k8s.render_eval import render_eval_job
    from evomerge.k8s.settings import ClusterSettings
    from tests.k8s.test_render_eval import OWNER, SEARCH, SETTINGS, spec

    own = render_eval_job(SEARCH, 1, "j", ["c1"], spec(queueName="team-a"), ClusterSettings(queue_name="shared"), OWNER)
    default = render_eval_job(SEARCH, 1, "j", ["c1"], spec(), ClusterSettings(queue_name="shared"), OWNER)
    none = render_eval_job(SEARCH, 1, "j", ["c1"], spec(), SETTINGS, OWNER)
    assert [(j["metadata"]["labels"].get(KUEUE_QUEUE_LABEL), j["spec"].get("suspend")) for j in (own, default, none)] == [
        ("team-a", True), ("shared", True), (None, None)]
    assert own["spec"]["activeDeadlineSeconds"] == 1200  # timeoutSeconds, counted by the Job controller from admission (startTime)
