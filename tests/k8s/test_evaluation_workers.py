"""Long-lived evaluation pods that ask the controller's work endpoint for candidates, against a real API server.

The test plays the pods: the Job controller creates them, the test reports their status (their IP) as a kubelet
would and talks to the endpoint over real HTTP as the pod's scorer does (evaluate/work_client.WorkClient). The
whole chain with a real vLLM server as the pods' server is tests/e2e/test_served.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from evomerge.evaluate.work_client import WorkClient, WorkEndpointGone
from evomerge.k8s import evaluation_workers
from evomerge.k8s.evaluation_workers import WorkerPool
from evomerge.k8s.render_search import render_namespace_accounts
from evomerge.k8s.settings import ClusterSettings
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.spec.merge_search import MergeSearchSpec
from test_operator import eventually, kube, search_body  # noqa: F401 (kube: the fixture)
from tests.support.ports import free_port

KEY = "tiny_colors/acc"


def recipe(weight: float) -> MergeRecipe:
    return MergeRecipe("linear", None, (ExpertWeights("e0", "file:///m/e0", {"weight": {"all": weight}}),
                                        ExpertWeights("e1", "file:///m/e1", {"weight": {"all": 1 - weight}})), ("all",), {})


@pytest.fixture
def pool(kube, namespace):
    search = kube.create(search_body("jp", namespace, search={"algorithm": "random", "populationSize": 4, "mode": "async"},
                                     evaluation={"engine": "vllm", "parallelism": 1}))
    for account in render_namespace_accounts(namespace, ClusterSettings()):
        kube.create(account)
    settings = ClusterSettings(work_port=free_port())
    workers = WorkerPool(kube, search, 1, MergeSearchSpec.model_validate(search["spec"]), settings, search, "127.0.0.1")
    yield workers
    workers.close()


def running_pod(kube, namespace: str, job: str, ip: str = "127.0.0.1", exclude: tuple[str, ...] = ()) -> str:
    """The Job's (newest) pod, reported running at `ip` as a kubelet reports it; its name."""
    def found():
        pods = [p for p in kube.list("Pod", namespace, f"batch.kubernetes.io/job-name={job}")
                if p["metadata"]["name"] not in exclude and not (p.get("status") or {}).get("phase") == "Failed"]
        return pods[0]["metadata"]["name"] if pods else None

    name = eventually(found, f"a pod of {job}")
    kube.patch("Pod", namespace, name, {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}},
               subresource="status")
    return name


def failed(kube, namespace: str, pod: str) -> None:
    status = {"phase": "Failed", "containerStatuses": [{"name": "score", "image": "x", "imageID": "", "ready": False,
                                                         "restartCount": 0, "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}
    kube.patch("Pod", namespace, pod, {"status": status}, subresource="status")


def test_one_pod_takes_candidate_after_candidate_and_stops_when_told(pool, kube, namespace):
    pool.submit("c0", recipe(0.1))
    (job,) = pool.workers
    assert kube.get("Job", namespace, job)["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    client = WorkClient(f"http://127.0.0.1:{pool.endpoint.port}", running_pod(kube, namespace, job))
    pool.submit("c1", recipe(0.2))  # the one worker is busy: c1 waits in the endpoint's queue for it

    client.report({"id": "c0", "scores": {KEY: 0.5}})  # the Job's first candidate, written by its merge step
    assert [(r.candidate, r.scores) for r in pool.wait()] == [("c0", {KEY: 0.5})]
    item = client.next()
    assert item["id"] == "c1" and MergeRecipe.from_dict(item["recipe"]) == recipe(0.2)
    client.report({"id": "c1", "error": "RuntimeError: boom"})
    assert [(r.candidate, r.scores, r.error) for r in pool.wait()] == [("c1", None, "RuntimeError: boom")]
    assert pool.pending == 0 and pool.workers == {job}  # one pod for both

    with ThreadPoolExecutor(1) as ask:
        stop = ask.submit(client.next)
        eventually(lambda: pool.endpoint.asking == 1, "the pod's next ask")
        pool.close()  # returns once the pod was told
        assert stop.result(timeout=60) is None  # 410: the pod ends, and its Job completes
    assert pool.endpoint.asking == 0


def test_a_restarted_controller_names_its_jobs_apart_from_its_predecessors(pool, kube, namespace):
    """A predecessor's pods ask an address that is gone and end by themselves (the new controller has no record
    of which Jobs were its predecessor's workers); its Jobs must not collide with theirs, even for the same first
    candidate."""
    pool.submit("c0", recipe(0.1))
    search = kube.get("MergeSearch", namespace, "jp")
    successor = WorkerPool(kube, search, 1, MergeSearchSpec.model_validate(search["spec"]),
                           ClusterSettings(work_port=free_port()), search, "127.0.0.1")
    try:
        successor.submit("c0", recipe(0.1))
        assert [n.rsplit("-", 1)[1] for n in (*pool.workers, *successor.workers)] == ["w1", "w2"]
        assert all(kube.get("Job", namespace, n) for n in (*pool.workers, *successor.workers))
    finally:
        successor.close()


def test_only_the_searchs_own_evaluation_pods_at_their_own_address_are_served(pool, kube, namespace):
    pool.submit("c0", recipe(0.1))
    (job,) = pool.workers
    pod = running_pod(kube, namespace, job, ip="10.1.2.3")  # not where the test's requests come from
    url = f"http://127.0.0.1:{pool.endpoint.port}"
    for name in (pod, "some-other-pod"):
        answer = requests.post(f"{url}/result", json={"pod": name, "id": "c0", "scores": {KEY: 1.0}}, timeout=10)
        assert answer.status_code == 403, name
    with pytest.raises(WorkEndpointGone, match="403"):
        WorkClient(url, pod).next()
    assert pool.endpoint.take_results(0.1) == [] and pool.endpoint.holding(job) == "c0"


def test_a_pod_that_dies_holding_a_candidate_costs_only_that_candidate(pool, kube, namespace, monkeypatch):
    monkeypatch.setattr(evaluation_workers, "CHECK_SECONDS", 0.2)
    pool.submit("c0", recipe(0.1))
    (job,) = pool.workers
    first = running_pod(kube, namespace, job)
    client = WorkClient(f"http://127.0.0.1:{pool.endpoint.port}", first)
    client.report({"id": "c0", "scores": {KEY: 0.5}})
    assert [r.candidate for r in pool.wait()] == ["c0"]
    pool.submit("c1", recipe(0.2))
    assert client.next()["id"] == "c1"

    failed(kube, namespace, first)  # the pod dies while it scores c1; its Job (backoffLimit 1) starts another
    second = running_pod(kube, namespace, job, exclude=(first,))
    again = WorkClient(f"http://127.0.0.1:{pool.endpoint.port}", second)
    assert again.next()["id"] == "c1"  # the replacement gets the candidate in flight again, before any other

    failed(kube, namespace, second)  # and dies too: the Job fails, and with it only c1
    (result,) = pool.wait()
    assert result.candidate == "c1" and result.scores is None and f"evaluation Job {job} ended" in result.error
    assert pool.pending == 0

    pool.submit("c2", recipe(0.3))  # a new worker Job takes the next candidate
    assert len(pool.workers) == 1 and job not in pool.workers
