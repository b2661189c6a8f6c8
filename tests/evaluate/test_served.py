"""A batch scored through a server with in-place swaps (evaluate/batch.py over engines/served.SwappingWorker with
the pod's sidecar as its server), as an evaluation pod scores it: the server started on the batch's first
candidate, the later ones are merged here and swapped in.

vLLM is the real server, the test session's (tests/support/vllm.py), serving the nano zoo's base; the
batch's first candidate is a merge equal to the base, so the server starts on "the merge step's output" as
in a pod. SGLang, which cannot run here, is its look-alike (FakeSGLang).
"""

from __future__ import annotations

import pytest

from evomerge.evaluate.batch import score_batch
from evomerge.evaluate.engines.resident import ResidentEngine
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.spec.merge_search import MergeSearchSpec
from tests.evaluate.support import ALL_TYPES
from tests.support.fake_servers import FakeSGLang
from tests.support.zoo_tasks import FIT_KEY, FIT_TASK, write_fit_tasks

SKILLS = ("add", "rev")


@pytest.fixture(scope="module")
def fit_tasks(nano_zoo, tmp_path_factory):
    return write_fit_tasks(nano_zoo, tmp_path_factory.mktemp("tasks"))


def spec_for(zoo, tasks, engine: str) -> MergeSearchSpec:
    """A loglikelihood objective (bits per byte) and a generated one (the zoo's exact match)."""
    return MergeSearchSpec.model_validate({
        "baseModel": {"uri": f"file://{zoo.base}"},
        "experts": [{"name": s, "uri": f"file://{zoo.experts[s]}"} for s in SKILLS],
        "objectives": [{"task": FIT_TASK, "metric": "bits_per_byte", "direction": "minimize", "limit": 8},
                       {"task": zoo.search_tasks[SKILLS[0]], "metric": zoo.metric, "limit": 8}],
        "evaluation": {"engine": engine, "includePaths": [str(zoo.tasks_dir), str(tasks)], "device": "cpu"},
    })


def recipe(zoo, *weights: float) -> MergeRecipe:
    experts = tuple(ExpertWeights(s, f"file://{zoo.experts[s]}", {"weight": {"all": w}}) for s, w in zip(SKILLS, weights))
    return MergeRecipe("task_arithmetic", f"file://{zoo.base}", experts)


@pytest.fixture
def served_dir(vllm_server, nano_zoo, tmp_path):
    """What a pod's merge step leaves: the folder the server started on (here the base, which the first
    candidate equals); the scorer writes later candidates next to it. The base is served again afterwards."""
    folder = tmp_path / "candidate"
    folder.symlink_to(nano_zoo.base)
    yield folder
    import requests

    requests.post(f"{vllm_server.url}/collective_rpc", json={"method": "reload_weights", "kwargs": {"weights_path": str(nano_zoo.base)}},
                  timeout=60).raise_for_status()
    requests.post(f"{vllm_server.url}/reset_prefix_cache", timeout=60).raise_for_status()


def test_one_server_scores_a_batch_as_the_in_process_engine_does(vllm_server, nano_zoo, fit_tasks, served_dir):
    recipes = [recipe(nano_zoo, 0.0, 0.0), recipe(nano_zoo, 1.0, 0.0), recipe(nano_zoo, 0.3, 0.9)]
    items = [{"id": f"c{i}", "recipe": r.to_dict()} for i, r in enumerate(recipes)]

    served = score_batch(items, spec_for(nano_zoo, fit_tasks, "vllm"), model_dir=served_dir, server_url=vllm_server.url)

    in_process = spec_for(nano_zoo, fit_tasks, "transformers")
    resident = ResidentEngine.from_spec(in_process, in_process.objectives, nano_zoo.base, {s: nano_zoo.experts[s] for s in SKILLS})
    expected = [resident.score(r) for r in recipes]
    assert [item.get("error") for item in served] == [None, None, None]
    assert [item["scores"] for item in served] == [pytest.approx(e, rel=1e-5) for e in expected]
    assert len({e[FIT_KEY] for e in expected}) == 3  # the candidates differ, so equal numbers mean the swaps took
    assert sorted(p.name for p in served_dir.parent.iterdir()) == ["candidate"]  # every swap's folder is gone with the batch


def test_an_sglang_batch_swaps_through_update_weights_from_disk(tiny_family, task_dir, tmp_path):
    """SGLang's look-alike (tests/support/fake_servers.FakeSGLang: SGLang has no CPU build to run here) serves
    the batch's first candidate, a merge equal to the base; the later ones are swapped in and scored."""
    search = MergeSearchSpec.model_validate({
        "baseModel": {"uri": str(tiny_family["base"])},
        "experts": [{"name": "e0", "uri": str(tiny_family["expert0"])}, {"name": "e1", "uri": str(tiny_family["expert1"])}],
        "objectives": ALL_TYPES,
        "evaluation": {"engine": "sglang", "includePaths": [str(task_dir)], "device": "cpu"},
    })
    recipes = [MergeRecipe("task_arithmetic", str(tiny_family["base"]),
                           tuple(ExpertWeights(f"e{i}", str(tiny_family[f"expert{i}"]), {"weight": {"all": w}}) for i, w in enumerate(ws)))
               for ws in ((0.0, 0.0), (1.0, 0.0), (0.2, 0.7))]
    folder = tmp_path / "candidate"
    folder.symlink_to(tiny_family["base"])
    with FakeSGLang(tiny_family["base"]) as server:
        served = score_batch([{"id": f"c{i}", "recipe": r.to_dict()} for i, r in enumerate(recipes)], search,
                             model_dir=folder, server_url=server.url)
        assert server.counters.paths.count("POST /update_weights_from_disk") == 2
    in_process = search.model_copy(update={"evaluation": search.evaluation.model_copy(update={"engine": "transformers"})})
    resident = ResidentEngine.from_spec(in_process, in_process.objectives, tiny_family["base"],
                                        {"e0": tiny_family["expert0"], "e1": tiny_family["expert1"]})
    expected = [resident.score(r) for r in recipes]
    assert [item.get("scores") for item in served] == [pytest.approx(e, rel=1e-5) for e in expected]
    assert expected[0] != pytest.approx(expected[1], rel=1e-5)  # different merges: equal numbers mean the swaps took
