"""The Kubernetes executor's decisions — batching, parallelism, adoption, result mapping — and its message format.

The backend here is an in-memory JobBackend (the executor's own interface, not the Kubernetes API): the test
finishes Jobs by hand. The real backend runs against a real API server in tests/k8s/test_operator.py.
"""

from __future__ import annotations

import json
from collections import deque

import pytest

from evomerge.evaluate.scores_message import decode_scores, encode_scores, max_candidates_per_message
from evomerge.executors.kubernetes import JobOutcome, KubernetesExecutor
from evomerge.merge.recipe import ExpertWeights, MergeRecipe

KEYS = ["gsm8k_ja/acc", "mgsm/exact_match"]


def recipe(w: float) -> MergeRecipe:
    return MergeRecipe("linear", None, (ExpertWeights("a", "pvc://m/a", {"weight": {"all": w}}),))


class Backend:
    def __init__(self, existing: dict[str, list[str]] | None = None):
        self.created: dict[str, list[str]] = {}
        self.finished: deque[JobOutcome] = deque()
        self._existing = existing or {}

    def existing(self):
        return dict(self._existing)

    def job_name(self, candidates):
        return f"job-{candidates[0]}-{len(candidates)}"

    def create(self, name, candidates):
        self.created[name] = [cid for cid, _ in candidates]

    def wait(self, names, timeout):
        ready = [o for o in self.finished if o.name in names]
        for outcome in ready:
            self.finished.remove(outcome)
        return ready

    def close(self):
        pass

    def succeed(self, name: str, scores: list[list[float] | None]) -> None:
        items = [{"id": i, "scores": dict(zip(KEYS, s))} if s else {"id": i, "error": "CUDA out of memory"} for i, s in enumerate(scores)]
        self.finished.append(JobOutcome(name, True, encode_scores(items, KEYS), seconds=10.0))


def test_candidates_spread_over_parallel_jobs_and_results_map_back_in_order():
    backend = Backend()
    executor = KubernetesExecutor(backend, KEYS, parallelism=3, per_job=4)
    for i in range(6):
        executor.submit(f"c{i}", recipe(i / 10))

    backend.succeed("job-c0-2", [[0.5, 0.25], None])
    results = executor.wait()

    assert backend.created == {"job-c0-2": ["c0", "c1"], "job-c2-2": ["c2", "c3"], "job-c4-2": ["c4", "c5"]}
    assert [(r.candidate, r.scores, r.error) for r in results] == [
        ("c0", {"gsm8k_ja/acc": 0.5, "mgsm/exact_match": 0.25}, None),
        ("c1", None, "CUDA out of memory"),
    ]
    assert results[0].seconds == 5.0  # the Job's time, shared by its candidates
    assert executor.pending == 4


def test_at_most_parallelism_jobs_run_and_the_next_starts_when_one_ends():
    backend = Backend()
    executor = KubernetesExecutor(backend, KEYS, parallelism=2, per_job=1)
    for i in range(4):
        executor.submit(f"c{i}", recipe(0.1))
    backend.succeed("job-c0-1", [[1.0, 1.0]])

    executor.wait()

    assert list(backend.created) == ["job-c0-1", "job-c1-1", "job-c2-1"]


def test_a_failed_job_fails_each_of_its_candidates_with_the_reason():
    backend = Backend()
    executor = KubernetesExecutor(backend, KEYS, parallelism=1, per_job=2)
    executor.submit("c0", recipe(0.1))
    executor.submit("c1", recipe(0.2))
    backend.finished.append(JobOutcome("job-c0-2", False, "Traceback ... RuntimeError: weights missing", "BackoffLimitExceeded"))

    results = executor.wait()

    assert [r.candidate for r in results] == ["c0", "c1"]
    assert all(r.scores is None and "job-c0-2 failed (BackoffLimitExceeded)" in r.error and "weights missing" in r.error for r in results)


def test_a_restarted_controller_adopts_jobs_it_created_before():
    backend = Backend(existing={"old-job": ["c3", "c4"]})
    executor = KubernetesExecutor(backend, KEYS, parallelism=2, per_job=2)
    executor.submit("c4", recipe(0.4))  # c3's result was recorded before the restart
    executor.submit("c5", recipe(0.5))
    backend.succeed("old-job", [[0.3, 0.3], [0.4, 0.4]])

    results = executor.wait()

    assert list(backend.created) == ["job-c5-1"]  # no second Job for c4
    assert [(r.candidate, r.scores["gsm8k_ja/acc"]) for r in results] == [("c4", 0.4)]


def test_batches_are_capped_so_that_their_scores_fit_a_termination_message():
    cap = max_candidates_per_message(KEYS)
    executor = KubernetesExecutor(Backend(), KEYS, parallelism=1, per_job=1000)

    assert executor.per_job == cap
    worst = [{"id": i, "scores": {k: -1.2345678e-05 for k in KEYS}} for i in range(cap)]
    assert len(encode_scores(worst, KEYS).encode()) <= 4096


def test_errors_are_cut_to_fit_and_every_candidate_keeps_its_place():
    items = [{"id": i, "error": "x" * 5000} for i in range(10)] + [{"id": 10, "scores": {k: 0.5 for k in KEYS}}]

    message = encode_scores(items, KEYS)
    decoded = decode_scores(message, [f"c{i}" for i in range(11)], KEYS)

    assert len(message.encode()) <= 4096
    assert [s is None for s, _ in decoded] == [True] * 10 + [False]
    assert all(e.startswith("xxx") for _, e in decoded[:10])
    assert decoded[10] == ({k: 0.5 for k in KEYS}, None)


def test_a_message_that_is_not_a_result_fails_the_batch_visibly():
    decoded = decode_scores("Killed", ["c0", "c1"], KEYS)
    assert all(s is None and "not a result" in e and "Killed" in e for s, e in decoded)
    other_keys = json.dumps({"k": ["other/acc"], "s": [[1.0], [1.0]]})
    assert decode_scores(other_keys, ["c0", "c1"], KEYS)[0][0] is None


def test_a_scorer_that_misses_an_objective_reports_it_as_an_error():
    message = encode_scores([{"id": "c0", "scores": {"gsm8k_ja/acc": 0.5}}], KEYS)
    ((scores, error),) = decode_scores(message, ["c0"], KEYS)
    assert scores is None and "mgsm/exact_match" in error


@pytest.mark.parametrize("parallelism, per_job, expected", [(3, 5, [1, 1, 1]), (1, 5, [3]), (2, 2, [2, 1])])
def test_jobs_fill_the_free_slots_before_growing_up_to_per_job(parallelism, per_job, expected):
    backend = Backend()
    executor = KubernetesExecutor(backend, KEYS, parallelism=parallelism, per_job=per_job)
    for i in range(3):
        executor.submit(f"c{i}", recipe(0.1))
    backend.succeed(f"job-c0-{expected[0]}", [[0.1, 0.1]] * expected[0])

    executor.wait()

    assert [len(v) for v in backend.created.values()] == expected


def test_a_pod_that_dies_mid_batch_costs_only_the_candidate_in_flight():
    backend = Backend()
    executor = KubernetesExecutor(backend, KEYS, parallelism=1, per_job=4)
    for i in range(4):
        executor.submit(f"c{i}", recipe(i / 10))
    # The scorer rewrites its message after each candidate: c0 scored, c1 failed on its own; then the pod died in c2.
    progress = encode_scores([{"id": "c0", "scores": dict(zip(KEYS, [0.5, 0.25]))}, {"id": "c1", "error": "bad recipe"}], KEYS)
    backend.finished.append(JobOutcome("job-c0-4", False, progress, "OOMKilled"))

    results = executor.wait()

    assert [(r.candidate, r.scores is not None) for r in results] == [("c0", True), ("c1", False), ("c2", False)]
    assert results[1].error == "bad recipe"
    assert "job-c0-4 failed (OOMKilled)" in results[2].error
    assert list(backend.created) == ["job-c0-4", "job-c3-1"]  # the candidate it never reached runs again
    assert executor.pending == 1
    backend.succeed("job-c3-1", [[0.7, 0.7]])
    assert [(r.candidate, r.scores["gsm8k_ja/acc"]) for r in executor.wait()] == [("c3", 0.7)]
    assert executor.pending == 0


def test_a_scorer_that_exits_cleanly_before_the_end_fails_the_candidates_it_skipped():
    message = encode_scores([{"id": "c0", "scores": {k: 0.5 for k in KEYS}}], KEYS)
    decoded = decode_scores(message, ["c0", "c1"], KEYS)
    assert decoded[0] == ({k: 0.5 for k in KEYS}, None)
    assert decoded[1][0] is None and "without scoring" in decoded[1][1]
