"""One vLLM server per worker: candidates merged here, swapped into the real server in place, scored through it.

The worker starts its own real server (it is killed in one test, so it cannot be the session's). The same
SwappingWorker scores an evaluation pod's batch through the pod's sidecar: tests/evaluate/test_served.py.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from evomerge.evaluate.engines.resident import ResidentEngine
from evomerge.evaluate.engines.served import SwappingWorker, WrongShapes
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.spec.merge_search import Objective
from tests.support.vllm import ANSWER_TASK, MAX_MODEL_LEN, write_answer_task

ITEMS = 8


@pytest.fixture(scope="module")
def include_paths(nano_zoo, tmp_path_factory) -> list[str]:
    directory = tmp_path_factory.mktemp("tasks")
    write_answer_task(nano_zoo, directory)
    return [str(nano_zoo.tasks_dir), str(directory)]


@pytest.fixture(scope="module")
def objectives(nano_zoo) -> list[Objective]:
    return [Objective(task=nano_zoo.search_tasks[nano_zoo.skills[0]], metric=nano_zoo.metric, limit=ITEMS),
            Objective(task=ANSWER_TASK, metric="perplexity", direction="minimize", limit=ITEMS)]


@pytest.fixture(scope="module")
def experts(nano_zoo) -> dict[str, Path]:
    return {name: nano_zoo.experts[name] for name in nano_zoo.skills[:2]}


@pytest.fixture(scope="module")
def worker(nano_zoo, experts, tmp_path_factory):
    with SwappingWorker.local(nano_zoo.base, experts, tmp_path_factory.mktemp("server-logs")) as served:
        yield served


@pytest.fixture(scope="module")
def resident(nano_zoo, experts, objectives, include_paths) -> ResidentEngine:
    return ResidentEngine(nano_zoo.base, experts, objectives, include_paths, "cpu", 8)


def _recipe(nano_zoo, experts, weights: tuple[float, float]) -> MergeRecipe:
    return MergeRecipe(
        "task_arithmetic", str(nano_zoo.base),
        tuple(ExpertWeights(name, str(path), {"weight": {"all": w}}) for (name, path), w in zip(experts.items(), weights)),
        ("all",), {"normalize": False},
    )


def test_candidates_score_as_in_process_through_one_server_start(worker, resident, nano_zoo, experts, objectives,
                                                                 include_paths):
    engine = worker.engine(objectives, include_paths)
    recipes = [_recipe(nano_zoo, experts, weights) for weights in ((1.0, 0.0), (0.3, 0.9), (0.0, 1.0))]
    scored = []
    for index, recipe in enumerate(recipes):
        following = recipes[index + 1] if index + 1 < len(recipes) else None  # merged while this one is scored
        got = engine.score(recipe, then=following)
        assert got == pytest.approx(resident.score(recipe), rel=1e-5)
        scored.append(got)
    assert (worker.timings.merges, worker.timings.merges_ahead) == (3, 2)  # each merged once, two of them ahead
    assert scored[0] != scored[2]
    assert worker.timings.server_starts == 1 and worker.handle.max_model_len == MAX_MODEL_LEN
    assert worker.timings.candidates == 3 and worker.timings.swap_s > 0
    # Only the folder the server serves is left, holding nothing but the weights.
    assert [(p.name, [f.name for f in p.iterdir()]) for p in worker.scratch.iterdir()] == [("base-3", ["model.safetensors"])]
    assert worker.serving == worker.scratch / "base-3"


def test_weights_of_other_shapes_are_refused_before_the_server_gets_them(worker, resident, nano_zoo, experts,
                                                                         objectives, include_paths, tmp_path):
    """vLLM's engine dies on an in-place reload of other shapes while /health still answers: the worker compares
    the folder's safetensors headers with the served checkpoint's and refuses it, and the server serves on."""
    from safetensors.torch import load_file, save_file

    engine = worker.engine(objectives, include_paths)
    engine.score(_recipe(nano_zoo, experts, (0.4, 0.4)))
    serving, starts = worker.serving, worker.timings.server_starts
    tensors = load_file(str(nano_zoo.base / "model.safetensors"))
    name = next(n for n in sorted(tensors) if n.endswith("embed_tokens.weight"))
    tensors[name] = tensors[name][:-1].clone()  # one token fewer: another vocabulary
    (tmp_path / "other").mkdir()
    save_file(tensors, str(tmp_path / "other" / "model.safetensors"))

    with pytest.raises(WrongShapes, match=rf"{name} is \[\d+, \d+\], served \[\d+, \d+\].*architecture and shapes"):
        worker.hand_over(tmp_path / "other")

    assert worker.serving == serving and worker.server.alive
    recipe = _recipe(nano_zoo, experts, (0.7, 0.2))
    assert engine.score(recipe) == pytest.approx(resident.score(recipe), rel=1e-5)
    assert worker.timings.server_starts == starts  # no restart: the server never saw the wrong shapes


def test_a_server_killed_mid_candidate_costs_only_a_retry_of_that_candidate(worker, resident, nano_zoo, experts,
                                                                            objectives, include_paths):
    engine = worker.engine(objectives, include_paths)
    engine.score(_recipe(nano_zoo, experts, (0.5, 0.5)))  # the server is up
    first = worker.server
    starts, backend = worker.timings.server_starts, worker.lm.backend
    original = backend.score

    def killed_at_the_first_request(request):
        backend.score = original
        os.killpg(first.process.pid, signal.SIGKILL)  # the whole server, as the OOM killer would
        return original(request)

    backend.score = killed_at_the_first_request
    recipe = _recipe(nano_zoo, experts, (0.8, 0.1))
    assert engine.score(recipe) == pytest.approx(resident.score(recipe), rel=1e-5)
    assert not first.alive and worker.server is not first and worker.server.alive
    assert (worker.timings.server_starts, worker.timings.retried) == (starts + 1, 1)


def test_closing_the_worker_stops_its_server_and_removes_the_weights(nano_zoo, experts, objectives, include_paths,
                                                                     worker):
    worker.engine(objectives, include_paths).score(_recipe(nano_zoo, experts, (0.2, 0.2)))
    server = worker.server
    assert server is not None and server.alive
    worker.close()
    assert not server.alive and not worker.scratch.exists()
    with pytest.raises(ProcessLookupError):
        os.killpg(server.process.pid, 0)  # no process of its group is left
