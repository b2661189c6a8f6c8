"""The controller killed mid-generation: its Job starts a new pod, which resumes from the history and ends
with the same best recipe as the uninterrupted run of the same spec and seed (the chain's EvoGM search)."""

from __future__ import annotations

import signal

from .helpers import eventually, finished, history, jobs, nano_search


def test_a_killed_controller_resumes_from_history_to_the_same_best_recipe(chain, kube, node, namespace, zoo, fit_tasks):
    reference = chain["evogm"]
    body = nano_search("resumed", namespace, zoo, fit_tasks, algorithm="evogm", publish=False)
    searched = ("baseModel", "experts", "merge", "search", "objectives")
    assert {k: body["spec"][k] for k in searched} == {k: reference.body["spec"][k] for k in searched}
    kube.create(body)

    def generation_two_running():
        # The second generation's evaluation Job exists and its scorer is running: mid-generation.
        running = node.running(lambda r: r.namespace == namespace and r.labels.get("evomerge.dev/component") == "evaluation")
        return len(jobs(kube, namespace, "evaluation")) == 2 and running and node.running(
            lambda r: r.namespace == namespace and r.labels.get("evomerge.dev/component") == "controller")

    eventually(generation_two_running, "the second generation to be under evaluation", timeout=300)
    (first,) = node.running(lambda r: r.namespace == namespace and r.labels.get("evomerge.dev/component") == "controller")
    assert node.kill(first, "controller", signal.SIGKILL)

    status = finished(kube, namespace, "resumed")

    assert status["phase"] == "Succeeded", status
    assert status["best"]["recipe"] == reference.status["best"]["recipe"]
    assert status["best"]["scores"] == reference.status["best"]["scores"]
    assert status["evaluations"] == reference.status["evaluations"] and status["failedEvaluations"] == 0
    controllers = node.pods(lambda r: r.namespace == namespace and r.labels.get("evomerge.dev/component") == "controller")
    assert [(c.attempt, c.containers["controller"].exit_code) for c in controllers] == [(0, 137), (1, 0)]
    assert controllers[0].owner == controllers[1].owner  # the same Job started the replacement
    (job,) = jobs(kube, namespace, "controller")
    assert job["status"]["failed"] == 1 and job["status"]["succeeded"] == 1
    # The generation in flight was adopted, not evaluated twice; the history has every candidate once.
    assert len(jobs(kube, namespace, "evaluation")) == 2
    evaluations = node.pods(lambda r: r.namespace == namespace and r.labels.get("evomerge.dev/component") == "evaluation")
    assert len(evaluations) == 2
    events = history(kube, namespace, "resumed")
    ids = [e["id"] for e in events if e["type"] == "result"]
    assert len(ids) == len(set(ids)) == status["evaluations"]
    asked = [cid for e in events if e["type"] == "ask" for cid in e["ids"]]
    assert asked == [cid for e in reference.history if e["type"] == "ask" for cid in e["ids"]]
