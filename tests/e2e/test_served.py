"""Served evaluation in the cluster with the REAL vLLM server: the test node runs the evaluation pod's native
sidecar as the CPU build of the pinned vLLM release (hack/vllm/install.sh), and the pod's scorer merges each
later candidate, hands its weights to that server in place and scores through it.

One pod scores every candidate of its Job with one server start; a server killed mid-batch is restarted by
the node (as a kubelet restarts a sidecar) and costs only the candidate in flight, which is scored again. In
async mode the pod lives for the whole search, asking the controller's work endpoint for candidate after
candidate (it holds no API token), so one server start serves every candidate of the search.
Each score is checked against the in-process engine on the same recipe, so a swap that did not take (a
candidate scored on another's weights) fails the test.
"""

from __future__ import annotations

import json

import pytest

from evomerge.evaluate.batch import input_dirs
from evomerge.evaluate.engines.resident import ResidentEngine
from evomerge.merge.recipe import MergeRecipe
from evomerge.runner.prepare import prepare
from evomerge.spec.merge_search import MergeSearchSpec
from tests.support.node import PodRecord

from .helpers import FIT_KEY, eventually, finished, history, nano_search, results

CANDIDATES = 3
# The CPU build on the nano zoo: float32 (its dtype), no CUDA-graph capture, the zoo's context length.
CPU_SERVER_ARGS = ["--dtype", "float32", "--enforce-eager", "--max-model-len", "128"]
SERVED_TIMEOUT = 900.0  # two vLLM starts (each ~1 min alone) on a 2-core machine shared with other work


def served_search(name: str, namespace: str, zoo, tasks) -> dict:
    return nano_search(name, namespace, zoo, tasks, population=CANDIDATES, generations=1, publish=False, held_out=False,
                       evaluation={"engine": "vllm", "serverArgs": CPU_SERVER_ARGS, "candidatesPerJob": CANDIDATES,
                                   "parallelism": 1})


def evaluation_pods(node, namespace: str) -> list[PodRecord]:
    return node.pods(lambda r: r.namespace == namespace and r.labels.get("evomerge.dev/component") == "evaluation")


def in_process_scores(kube, body: dict, pod: PodRecord) -> dict[str, float]:
    """FIT_KEY of each candidate of the pod's Job, scored by the transformers engine on the Job's own recipes."""
    items = json.loads(kube.get("ConfigMap", pod.namespace, pod.job)["data"]["recipes.json"])
    spec = MergeSearchSpec.model_validate(body["spec"])
    spec = spec.model_copy(update={"evaluation": spec.evaluation.model_copy(update={"engine": "transformers"})})
    engine = ResidentEngine.from_spec(spec, spec.objectives, *input_dirs(spec))
    return {item["id"]: engine.score(MergeRecipe.from_dict(item["recipe"]))[FIT_KEY] for item in items}


def test_one_pod_scores_every_candidate_with_one_vllm_server_start(kube, node, namespace, zoo, fit_tasks):
    body = served_search("served", namespace, zoo, fit_tasks)
    kube.create(body)

    status = finished(kube, namespace, "served", timeout=SERVED_TIMEOUT)

    assert status["phase"] == "Succeeded", status
    (pod,) = evaluation_pods(node, namespace)
    assert pod.containers["server"].restarts == 0 and pod.containers["score"].exit_code == 0
    scored = results(kube, namespace, "served")
    assert sorted(scored) == [f"c00000{i}" for i in range(CANDIDATES)]
    assert all(entry["error"] is None for entry in scored.values()), scored
    expected = in_process_scores(kube, body, pod)
    assert {cid: entry["scores"][FIT_KEY] for cid, entry in scored.items()} == pytest.approx(expected, rel=1e-4)
    assert len(set(expected.values())) == CANDIDATES  # different merges: equal numbers mean every swap took


def test_a_server_killed_mid_batch_costs_only_the_candidate_in_flight_which_is_scored_again(kube, node, namespace, zoo,
                                                                                            fit_tasks):
    body = served_search("server-dies", namespace, zoo, fit_tasks)
    kube.create(body)

    def first_scored() -> PodRecord | None:
        pods = evaluation_pods(node, namespace)
        return pods[0] if pods and f"(1/{CANDIDATES}) scored" in node.log(pods[0], "score") else None

    pod = eventually(first_scored, "the pod's first candidate to be scored", timeout=SERVED_TIMEOUT / 2,
                     detail=lambda: [node.log(p, "score")[-2000:] for p in evaluation_pods(node, namespace)])
    assert node.kill(pod, "server")  # the whole server process group, as a node-level failure would
    status = finished(kube, namespace, "server-dies", timeout=SERVED_TIMEOUT)

    assert status["phase"] == "Succeeded", status
    assert evaluation_pods(node, namespace) == [pod]  # the pod went on: no second pod, no candidate lost
    assert pod.containers["server"].restarts == 1 and pod.containers["score"].exit_code == 0
    assert "the server failed" in node.log(pod, "score")
    scored = results(kube, namespace, "server-dies")
    assert all(entry["error"] is None for entry in scored.values()) and len(scored) == CANDIDATES, scored
    expected = in_process_scores(kube, body, pod)
    assert {cid: entry["scores"][FIT_KEY] for cid, entry in scored.items()} == pytest.approx(expected, rel=1e-4)


def in_process_search_scores(kube, body: dict) -> dict[str, float]:
    """FIT_KEY of every candidate the search asked for (decoded from the history's vectors), scored in-process."""
    spec = MergeSearchSpec.model_validate(body["spec"])
    spec = spec.model_copy(update={"evaluation": spec.evaluation.model_copy(update={"engine": "transformers"})})
    genome = prepare(spec).genome
    engine = ResidentEngine.from_spec(spec, spec.objectives, *input_dirs(spec))
    asked = [(cid, vector) for event in history(kube, body["metadata"]["namespace"], body["metadata"]["name"])
             if event["type"] == "ask" for cid, vector in zip(event["ids"], event["vectors"])]
    return {cid: engine.score(genome.decode(vector))[FIT_KEY] for cid, vector in asked}


def test_an_async_search_keeps_one_pod_and_one_server_asking_for_work_a_dead_server_costs_one_retry(
        kube, node, namespace, zoo, fit_tasks):
    evaluations = 4
    body = nano_search("served-async", namespace, zoo, fit_tasks, population=2, generations=2, publish=False,
                       held_out=False, search={"mode": "async"},
                       evaluation={"engine": "vllm", "serverArgs": CPU_SERVER_ARGS, "parallelism": 1})
    kube.create(body)

    def first_scored() -> PodRecord | None:
        pods = evaluation_pods(node, namespace)
        return pods[0] if pods and "(1) scored" in node.log(pods[0], "score") else None

    pod = eventually(first_scored, "the pod's first candidate to be scored", timeout=SERVED_TIMEOUT / 2,
                     detail=lambda: [node.log(p, "score")[-2000:] for p in evaluation_pods(node, namespace)])
    assert node.kill(pod, "server")
    status = finished(kube, namespace, "served-async", timeout=SERVED_TIMEOUT)

    assert status["phase"] == "Succeeded", status
    assert evaluation_pods(node, namespace) == [pod]  # one pod, asking for work, served the whole search
    assert pod.containers["server"].restarts == 1
    log = node.log(pod, "score")
    assert "the server failed" in log and f"({evaluations}) scored" in log
    scored = results(kube, namespace, "served-async")
    assert len(scored) == evaluations and all(entry["error"] is None for entry in scored.values()), scored
    expected = in_process_search_scores(kube, body)
    assert {cid: entry["scores"][FIT_KEY] for cid, entry in scored.items()} == pytest.approx(expected, rel=1e-4)
    assert len(set(expected.values())) == evaluations  # different merges: equal numbers mean every swap took
