"""Operator metrics derived from watch events: names, labels, and counters that never double count."""

from __future__ import annotations

from prometheus_client import generate_latest

from evomerge.k8s.metrics import OperatorMetrics


def search(uid: str, phase: str, evaluations: int, failed: int, best: str | None = None, generation: int = 0) -> dict:
    status = {"phase": phase, "evaluations": evaluations, "failedEvaluations": failed, "generation": generation}
    if best is not None:
        status["best"] = {"score": best, "scores": {"gsm8k/acc": best}}
    return {"metadata": {"uid": uid, "namespace": "ns", "name": f"s-{uid}"}, "status": status}


def sample(metrics: OperatorMetrics, name: str, **labels) -> float | None:
    for family in metrics.registry.collect():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def test_search_gauges_follow_status_and_counters_count_only_new_evaluations():
    metrics = OperatorMetrics()
    metrics.observe_search("ADDED", search("1", "Running", 10, 2, "0.5", generation=2))  # first sight: a baseline
    metrics.observe_search("MODIFIED", search("1", "Running", 16, 3, "0.7", generation=3))
    metrics.observe_search("ADDED", search("2", "Succeeded", 5, 0))

    assert sample(metrics, "evomerge_evaluations_total", result="succeeded") == 5
    assert sample(metrics, "evomerge_evaluations_total", result="failed") == 1
    assert sample(metrics, "evomerge_searches", phase="Running") == 1
    assert sample(metrics, "evomerge_searches", phase="Succeeded") == 1
    assert sample(metrics, "evomerge_search_generation", search="s-1") == 3
    assert sample(metrics, "evomerge_search_best_score", search="s-1", objective="fitness") == 0.7
    assert sample(metrics, "evomerge_search_best_score", search="s-1", objective="gsm8k/acc") == 0.7

    metrics.observe_search("DELETED", search("1", "Running", 16, 3, "0.7"))
    assert sample(metrics, "evomerge_searches", phase="Running") == 0
    assert sample(metrics, "evomerge_search_best_score", search="s-1", objective="fitness") is None
    assert sample(metrics, "evomerge_search_generation", search="s-1") is None


def test_evaluation_jobs_are_timed_once_and_only_when_they_finished_after_start():
    metrics = OperatorMetrics()
    finished = {"metadata": {"uid": "j1"}, "status": {
        "startTime": "2099-01-01T00:00:00Z", "completionTime": "2099-01-01T00:02:00Z",
        "conditions": [{"type": "Complete", "status": "True"}]}}
    old = {"metadata": {"uid": "j0"}, "status": {
        "startTime": "2000-01-01T00:00:00Z", "completionTime": "2000-01-01T00:02:00Z",
        "conditions": [{"type": "Complete", "status": "True"}]}}

    for job in (finished, finished, old, {"metadata": {"uid": "j2"}, "status": {}}):
        metrics.observe_evaluation_job(job)

    assert sample(metrics, "evomerge_evaluation_duration_seconds_count") == 1
    assert sample(metrics, "evomerge_evaluation_duration_seconds_sum") == 120


def test_exposition_uses_prometheus_naming():
    text = generate_latest(OperatorMetrics().registry).decode()
    for name in ("evomerge_searches", "evomerge_evaluations_total", "evomerge_evaluation_duration_seconds_bucket",
                 "evomerge_reconcile_errors_total", "evomerge_reconcile_duration_seconds"):
        assert f"# TYPE {name.removesuffix('_bucket').removesuffix('_total')}" in text
