"""What clusters do to a running search — a drain loop deleting its controller pod, a cleanup deleting its history
ConfigMaps — costs it nothing: the Job's failure budget is untouched, status says the controller is restarting
while it is down, the history is written again, and the search finishes with every candidate evaluated once.

The Job controller still waits before each replacement pod (10 s, 20 s, 40 s, … after failed pods, ignored ones
included), so a few deletions show all of it without a long test."""

from __future__ import annotations

from .helpers import condition, eventually, events, finished, history, jobs, nano_search, status_of

DELETIONS = 3  # were a deleted pod counted against the backoffLimit, the Job's status.failed would say 3
HISTORY = "evomerge.dev/component=history,evomerge.dev/search=disrupted"


def test_deleted_controller_pods_and_history_configmaps_cost_the_search_nothing(kube, node, namespace, zoo, fit_tasks):
    population, generations = 2, 10
    kube.create(nano_search("disrupted", namespace, zoo, fit_tasks, population=population, generations=generations,
                            publish=False, held_out=False))

    def controller() -> str | None:
        """The controller pod whose process runs and has counted its start in status."""
        running = node.running(lambda r: r.namespace == namespace and r.labels.get("evomerge.dev/component") == "controller"
                               and r.phase == "Running")
        return running[0].name if running else None

    starts = lambda: int(status_of(kube, namespace, "disrupted").get("controllerStarts") or 0)  # noqa: E731
    eventually(lambda: kube.list("ConfigMap", namespace, HISTORY) and controller(), "the first history events", timeout=300)
    for chunk in kube.list("ConfigMap", namespace, HISTORY):
        kube.delete("ConfigMap", namespace, chunk["metadata"]["name"])
    eventually(lambda: kube.list("ConfigMap", namespace, HISTORY), "the history written again", timeout=300)

    deleted, restarting = 0, []
    while deleted < DELETIONS and status_of(kube, namespace, "disrupted").get("phase") == "Running":
        before = starts()
        pod = eventually(lambda: starts() == before and controller(), "a running controller", timeout=120)
        kube.delete("Pod", namespace, pod)
        deleted += 1
        ready = lambda: condition(status_of(kube, namespace, "disrupted"), "Ready").get("message", "")  # noqa: E731
        # the message of this deletion, not the last one's: the operator may not have said "running" in between
        saying = eventually(lambda: ready() if f"restarting ({before})" in ready() else starts() > before and "the next pod started first",
                            "the Ready condition while the controller is down", timeout=180)
        restarting.append(saying)
        eventually(lambda: starts() > before or status_of(kube, namespace, "disrupted").get("phase") != "Running",
                   f"the controller's next pod after deletion {deleted}", timeout=180)
    status = finished(kube, namespace, "disrupted")

    assert deleted == DELETIONS, f"the search finished after {deleted} deletions; give it more generations"
    assert [m.split(" is ", 1)[-1][:14] for m in restarting] == [f"restarting ({n})" for n in range(1, DELETIONS + 1)], restarting
    assert status["phase"] == "Succeeded" and condition(status, "Degraded")["status"] == "False", status
    assert status["evaluations"] == population * generations and status["controllerStarts"] == DELETIONS + 1
    (job,) = jobs(kube, namespace, "controller")
    assert not job["status"].get("failed"), job["status"]  # no deletion was counted against the backoffLimit
    ids = [e["id"] for e in history(kube, namespace, "disrupted") if e["type"] == "result"]
    assert len(ids) == len(set(ids)) == population * generations  # every candidate once: nothing lost, nothing redone
    assert "HistoryLost" not in [e["reason"] for e in events(kube, namespace, "disrupted", "MergeSearch")]
