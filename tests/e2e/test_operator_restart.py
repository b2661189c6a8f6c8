"""The operator restarted mid-search — its process killed, then its pod deleted and replaced — leaves no
duplicate and no orphaned Job behind, and the search still finishes."""

from __future__ import annotations

import threading

from evomerge.k8s.client import Kube

from .helpers import eventually, finished, jobs, nano_search


class JobLog(threading.Thread):
    """Every Job the namespace ever had, from a watch: name → uids (two uids: deleted and created again)."""

    def __init__(self, kube: Kube, namespace: str):
        super().__init__(daemon=True)
        self.kube, self.namespace = kube, namespace
        self.uids: dict[str, set[str]] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        items, version = self.kube.list_with_version("Job", self.namespace)
        for job in items:
            self.uids.setdefault(job["metadata"]["name"], set()).add(job["metadata"]["uid"])
        while not self.stopped.is_set():
            for kind, job in self.kube.watch("Job", self.namespace, None, version, 2):
                version = job["metadata"].get("resourceVersion", version)
                if kind != "BOOKMARK":
                    self.uids.setdefault(job["metadata"]["name"], set()).add(job["metadata"]["uid"])


def test_restarting_the_operator_mid_search_duplicates_and_orphans_nothing(kube, node, operator, namespace, zoo, fit_tasks):
    log = JobLog(kube, namespace)
    log.start()
    kube.create(nano_search("steady", namespace, zoo, fit_tasks, population=2, generations=2, publish=False, held_out=False,
                            evaluation={"candidatesPerJob": 1, "parallelism": 2}))

    eventually(lambda: jobs(kube, namespace, "evaluation"), "the first evaluation Job", timeout=240)
    crashed = operator.crash()
    operator.wait_healthy()
    eventually(lambda: len(jobs(kube, namespace, "evaluation")) > 2, "the second generation's Jobs", timeout=300)
    kube.delete("Pod", crashed.namespace, crashed.name)
    eventually(lambda: operator.record().uid != crashed.uid, "a replacement operator pod")
    operator.wait_healthy()
    status = finished(kube, namespace, "steady")
    log.stopped.set()
    log.join(10)

    assert status["phase"] == "Succeeded" and status["evaluations"] == 4, status
    assert {name: len(uids) for name, uids in log.uids.items()} == {name: 1 for name in log.uids}, log.uids
    assert len([n for n in log.uids if "controller" in n]) == 1
    assert len(jobs(kube, namespace, "evaluation")) == 4 == len(log.uids) - 1
    for kind in ("Job", "ConfigMap", "MergedModel"):
        for obj in kube.list(kind, namespace):
            if obj["metadata"]["name"] == "kube-root-ca.crt":
                continue
            (owner,) = obj["metadata"]["ownerReferences"]
            alive = kube.get(owner["kind"], namespace, owner["name"])
            assert alive is not None and alive["metadata"]["uid"] == owner["uid"], f"{kind} {obj['metadata']['name']} is orphaned"
    assert crashed.containers["operator"].restarts == 1
    assert len(node.pods(lambda r: r.namespace == crashed.namespace and r.labels.get("app.kubernetes.io/component") == "operator")) >= 2
