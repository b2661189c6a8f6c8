"""A search in a Kueue queue, in the cluster as a platform team runs it: the chart's operator, Kueue's own controller
(v0.19, built from its Go module; tests/support/kueue.py says how it runs) and the test node. Under a closed quota the
search waits as Queued; a quota that fits its controller Job but not its evaluation Job runs the search with that
evaluation counted as queued (status and the Ready message); the full quota lets Kueue admit it, the evaluation's
deadline starts then, and the search runs to completion."""

from __future__ import annotations

import datetime

from evomerge.k8s.naming import KUEUE_QUEUE_LABEL

from .helpers import condition, eventually, finished, jobs, nano_search, status_of


def test_a_search_waits_for_kueues_quota_and_runs_to_completion_when_it_opens(kube, operator, node, namespace, kueue,
                                                                              cluster_queue, zoo, fit_tasks):
    queue = cluster_queue  # its quota closed
    evaluation = {"queueName": queue, "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}
    kube.create(nano_search("queued", namespace, zoo, fit_tasks, generations=1, held_out=False, publish=False,
                            evaluation=evaluation))

    status = eventually(lambda: status_of(kube, namespace, "queued").get("phase") == "Queued" and status_of(kube, namespace, "queued"),
                        "the search to wait as Queued")
    assert f"waits in Kueue LocalQueue {queue} for admission" in condition(status, "Ready")["message"]
    (controller,) = jobs(kube, namespace, "controller")
    assert controller["spec"]["suspend"] is True and controller["metadata"]["labels"][KUEUE_QUEUE_LABEL] == queue
    eventually(lambda: any(e["reason"] == "Queued" for e in kube.list("Event", namespace)), "the Queued event")

    kueue.quota(queue, cpu="1", memory="2Gi")  # the controller Job (500m, 1Gi) fits; its evaluation Job (1, 1Gi) not beside it

    waits = f"; 1 evaluation Job waits in Kueue LocalQueue {queue} for admission"
    status = eventually(lambda: waits in condition(status_of(kube, namespace, "queued"), "Ready").get("message", "")
                        and status_of(kube, namespace, "queued"), "the Ready message to name the queued evaluation Job", timeout=180)
    assert (status["phase"], status["queuedEvaluations"]) == ("Running", 1)
    (waiting,) = jobs(kube, namespace, "evaluation")
    assert waiting["spec"]["suspend"] is True and not (waiting.get("status") or {}).get("startTime")

    opened = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    kueue.quota(queue, cpu="2", memory="4Gi")

    status = finished(kube, namespace, "queued")
    assert status["phase"] == "Succeeded" and status["evaluations"] == 3 and status.get("queuedEvaluations") == 0, status
    (evaluated,) = jobs(kube, namespace, "evaluation")
    assert evaluated["metadata"]["creationTimestamp"] <= opened <= evaluated["status"]["startTime"]  # its deadline ran from admission
    (workload,) = [w for w in kueue.workloads(namespace) if w["metadata"]["ownerReferences"][0]["name"] == evaluated["metadata"]["name"]]
    assert any(c["type"] == "Admitted" and c["status"] == "True" for c in workload["status"]["conditions"])
