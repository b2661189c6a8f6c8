"""Failing evaluations: retried per the Job's policy, counted, and the search goes on — until more fail than
`evaluation.maxFailedEvaluations` allows, when the search is Failed with a Degraded condition naming why.

The node injects what only a node can do (an OOM kill during the merge, a scorer that crashes); a pod that
never starts and a scorer that cannot find its metric are real causes, not injected.
"""

from __future__ import annotations

import signal

from tests.support.node import Fault

from .helpers import FIT_KEY, FIT_TASK, condition, events, finished, jobs, nano_search, results


def _candidates_of(kube, pod: dict) -> list[str]:
    job = kube.get("Job", pod["metadata"]["namespace"], pod["metadata"]["labels"].get("batch.kubernetes.io/job-name", ""))
    return ((job or {}).get("metadata", {}).get("annotations") or {}).get("evomerge.dev/candidates", "").split(",")


def test_failed_evaluations_are_retried_counted_and_the_search_goes_on(kube, node, faults, namespace, zoo, fit_tasks):
    def evaluating(candidate: str):
        return lambda pod, container, attempt: (pod["metadata"]["namespace"] == namespace and container == "score"
                                                and _candidates_of(kube, pod) == [candidate])

    # c000000: the merge runs out of memory on the first attempt only; c000001: the scorer crashes every time.
    faults.add(lambda pod, container, attempt: evaluating("c000000")(pod, container, attempt) and attempt == 0,
               Fault(signal.SIGKILL, after_seconds=0.5, reason="OOMKilled"))
    faults.add(evaluating("c000001"), Fault(signal.SIGSEGV, after_seconds=0.5))
    kube.create(nano_search("flaky", namespace, zoo, fit_tasks, population=3, generations=2, publish=False, held_out=False,
                            evaluation={"candidatesPerJob": 1, "parallelism": 3, "maxFailedEvaluations": 2}))

    status = finished(kube, namespace, "flaky")

    assert status["phase"] == "Succeeded", status
    assert (status["evaluations"], status["failedEvaluations"]) == (6, 1)
    assert [g["failed"] for g in status["generations"]] == [1, 0]
    scored = results(kube, namespace, "flaky")
    assert scored["c000000"]["scores"][FIT_KEY] > 0  # retried by its Job, then scored
    assert "BackoffLimitExceeded" in scored["c000001"]["error"], scored["c000001"]
    assert all(scored[c]["error"] is None for c in scored if c != "c000001")
    pods = {cid: node.pods(lambda r, cid=cid: r.namespace == namespace and r.job and r.job.endswith(f"-{cid}-1"))
            for cid in ("c000000", "c000001")}
    assert [(p.containers["score"].exit_code, p.containers["score"].reason) for p in pods["c000000"]] == [(137, "OOMKilled"), (0, "Completed")]
    assert [p.containers["score"].exit_code for p in pods["c000001"]] == [139, 139]  # backoffLimit 1: one retry
    assert condition(status, "Degraded")["status"] == "False"


def test_beyond_max_failed_evaluations_the_search_fails_naming_the_cause(kube, node, namespace, zoo, fit_tasks):
    small = {"population": 2, "generations": 1, "publish": False, "held_out": False}
    # A pod that never starts: the node has no such image (ErrImagePull, ImagePullBackOff) until the deadline.
    kube.create(nano_search("never-starts", namespace, zoo, fit_tasks, **small, evaluation={
        "image": "registry.invalid/evomerge-worker:missing", "timeoutSeconds": 10, "candidatesPerJob": 1,
        "parallelism": 2, "maxFailedEvaluations": 1}))
    # A scorer that runs but cannot find its metric: the task reports bits_per_byte, not acc.
    kube.create(nano_search("wrong-metric", namespace, zoo, fit_tasks, **small, objectives=[{"task": FIT_TASK, "metric": "acc"}],
                            evaluation={"maxFailedEvaluations": 1}))

    never, wrong = finished(kube, namespace, "never-starts"), finished(kube, namespace, "wrong-metric")

    for name, status, cause in (("never-starts", never, "DeadlineExceeded"),
                                ("wrong-metric", wrong, f"task '{FIT_TASK}' reports no metric 'acc'")):
        assert status["phase"] == "Failed", status
        degraded = condition(status, "Degraded")
        assert (degraded["status"], degraded["reason"]) == ("True", "SearchFailed")
        assert "maxFailedEvaluations is 1" in degraded["message"] and cause in degraded["message"], degraded["message"]
        assert condition(status, "Ready")["status"] == "False"
        warnings = [e for e in events(kube, namespace, name, "MergeSearch") if e["type"] == "Warning"]
        assert any(e["reason"] == "SearchFailed" and cause in e["message"] for e in warnings), warnings
        assert status["failedEvaluations"] == 2
    # The deadline's failure names what kept the pod from starting, not only that time ran out.
    assert "cannot start (ImagePullBackOff)" in never["stopReason"] or "cannot start (ErrImagePull)" in never["stopReason"], never
    stuck = node.pods(lambda r: r.namespace == namespace and r.labels.get("evomerge.dev/search") == "never-starts"
                      and r.labels.get("evomerge.dev/component") == "evaluation")
    assert stuck and all(r.waiting_reason == "ImagePullBackOff" and not r.containers for r in stuck)
    for job in jobs(kube, namespace, "evaluation"):
        if job["metadata"]["labels"]["evomerge.dev/search"] == "never-starts":
            assert next(c for c in job["status"]["conditions"] if c["type"] == "Failed")["reason"] == "DeadlineExceeded"
