"""A search with a Kueue queue, admitted by Kueue's own controller (v0.19, tests/support/kueue.py): every Job joins the
LocalQueue created suspended, the search waits as Queued under a closed quota (a healthy, progressing state: kstatus
InProgress), and runs once the quota opens and Kueue admits its controller Job; the real Job controller then starts the
Job and sets status.startTime, from which activeDeadlineSeconds counts."""

from __future__ import annotations

from evomerge.k8s.naming import KUEUE_QUEUE_LABEL
from tests.k8s.test_kstatus import kstatus, verdicts  # noqa: F401 (fixture)
from tests.k8s.test_operator import (  # noqa: F401 (fixtures)
    condition, controller_jobs, eventually, kube, operator, reasons, search_body, status_of,
)


def test_a_queued_search_waits_as_queued_and_runs_when_kueue_admits_it(kstatus, kube, operator, namespace, kueue,  # noqa: F811
                                                                        cluster_queue):
    assert kueue.version().startswith("v0.19.")  # the release whose API (kueue.x-k8s.io/v1beta2) evomerge targets
    queue = cluster_queue
    kube.create(search_body("queued", namespace, evaluation={"parallelism": 2, "candidatesPerJob": 2, "queueName": queue}))

    (job,) = eventually(lambda: controller_jobs(kube, namespace), "the controller Job")
    name = job["metadata"]["name"]
    assert job["metadata"]["labels"][KUEUE_QUEUE_LABEL] == queue and job["spec"]["suspend"] is True
    (workload,) = eventually(lambda: [w for w in kueue.workloads(namespace) if _pending_for_quota(w)],
                             "Kueue to find no quota for the controller Job's Workload")
    assert workload["metadata"]["ownerReferences"][0]["name"] == name
    status = eventually(lambda: status_of(kube, namespace, "queued").get("phase") == "Queued" and status_of(kube, namespace, "queued"),
                        "the search to wait as Queued")
    assert (condition(status, "Progressing")["status"], condition(status, "Progressing")["reason"]) == ("True", "Queued")
    assert queue in condition(status, "Ready")["message"] and condition(status, "Degraded")["status"] == "False"
    assert verdicts(kstatus, kube.get("MergeSearch", namespace, "queued")) == ["InProgress"]
    eventually(lambda: "Queued" in reasons(kube, namespace, "queued"), "the Queued event")
    assert not (kube.get("Job", namespace, name).get("status") or {}).get("startTime")  # no deadline running

    kueue.quota(queue, cpu="1", memory="2Gi")  # the controller Job asks for 500m and 1Gi

    admitted = eventually(lambda: not kube.get("Job", namespace, name)["spec"].get("suspend") and kube.get("Job", namespace, name),
                          "Kueue to admit the controller Job")
    eventually(lambda: (kube.get("Job", namespace, name).get("status") or {}).get("startTime"),
               "the Job controller to start the admitted Job")
    assert admitted["metadata"]["labels"][KUEUE_QUEUE_LABEL] == queue
    eventually(lambda: status_of(kube, namespace, "queued").get("phase") == "Running", "the search to run")


def _pending_for_quota(workload: dict) -> bool:
    """Kueue's own word that a Workload waits: QuotaReserved False, its message naming the quota it lacks."""
    reserved = next((c for c in (workload.get("status") or {}).get("conditions") or [] if c["type"] == "QuotaReserved"), {})
    return reserved.get("status") == "False" and "insufficient" in reserved.get("message", "")


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
    # owned by the controller Job, not controlled by it: Kueue would take a Job controlled by a queued Job for a part
    # of that Job's workload, and never admit it on its own (tests/e2e/test_kueue.py runs one to completion)
    assert [(o["kind"], o["controller"]) for o in own["metadata"]["ownerReferences"]] == [("Job", False)]
