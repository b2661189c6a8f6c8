"""The controller: seeding an epoch with the elite, and (against a real API server) the spec's seeds as the first
candidates of epoch 1. The prelude it shares with `evomerge run` is tested in tests/runner/test_prepare.py."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from evomerge.k8s.controller_main import ControllerError, check_memory, elite_vectors, run_controller
from evomerge.k8s.history_configmap import ConfigMapHistory
from evomerge.k8s.render_search import Epoch, render_epoch_configmap, render_namespace_accounts
from evomerge.k8s.settings import ClusterSettings
from evomerge.models.uris import PVC_MOUNT_ROOT_ENV
from evomerge.search.genome import Genome
from evomerge.spec.merge_search import MergeSearchSpec
from test_operator import Node, climbable_score, kube, search_body  # noqa: F401 (kube: the fixture)


def genome(experts: list[str], method: str = "ties", groups=("blocks0", "blocks1")) -> Genome:
    return Genome.build(method, "pvc://m/base", [(n, f"pvc://m/{n}") for n in experts], tuple(groups), ["weight", "density"],
                        {"weight": (0.0, 1.0), "density": (0.1, 1.0)}, {})


def test_the_elite_keeps_its_values_and_a_new_expert_enters_at_its_low_bounds():
    before = genome(["a", "b"])
    elite = before.decode(np.array([0.7, 0.6, 0.9, 0.8, 0.2, 0.3, 0.5, 0.4]))

    vectors, notes = elite_vectors(genome(["a", "b", "c"]), [elite.to_dict()])

    after = genome(["a", "b", "c"])
    seeded = after.decode(vectors[0])
    assert notes == []
    assert {e.name: e.params for e in seeded.experts if e.name != "c"} == {e.name: e.params for e in elite.experts}
    assert seeded.experts[2].params == {"weight": {"blocks0": 0.0, "blocks1": 0.0}, "density": {"blocks0": 0.1, "blocks1": 0.1}}


def test_an_elite_of_another_method_is_not_seeded_and_the_reason_is_given():
    elite = genome(["a", "b"], method="task_arithmetic").decode(np.full(8, 0.5))

    vectors, notes = elite_vectors(genome(["a", "b"]), [elite.to_dict()])

    assert vectors is None and "merges with task_arithmetic" in notes[0]


def test_a_worker_that_cannot_fit_its_gpu_fails_the_epoch_before_any_pod_naming_the_field(tiny_family):
    def search(gpu_memory: str) -> MergeSearchSpec:
        return MergeSearchSpec.model_validate({
            "baseModel": {"uri": str(tiny_family["base"])}, "objectives": [{"task": "t"}],
            "experts": [{"name": "e0", "uri": str(tiny_family["expert0"])}, {"name": "e1", "uri": str(tiny_family["expert1"])}],
            "evaluation": {"device": "cuda", "gpuMemory": gpu_memory}})

    check_memory(search("1Gi"))  # the tiny models fit
    with pytest.raises(ControllerError, match="^evaluation.gpuMemory: one evaluation worker needs"):
        check_memory(search("16Ki"))


def seeded_spec(family, seeds: list[dict], algorithm: str = "random") -> dict:
    """A search body over the tiny family whose spec lists `seeds`."""
    return search_body("seeded", "unused", family, search={"algorithm": algorithm, "populationSize": 3, "maxGenerations": 1,
                                                           "seed": 3, "seeds": seeds})


def mergekit_config(family, w0: float, w1: float) -> dict:
    return {"merge_method": "task_arithmetic", "base_model": str(family["base"]),
            "models": [{"model": str(family["expert0"]), "parameters": {"weight": w0}},
                       {"model": str(family["expert1"]), "parameters": {"weight": w1}}]}


def test_the_spec_seeds_are_the_first_candidates_of_epoch_one_and_a_seed_on_a_claim_is_read(kube, namespace, tiny_family,
                                                                                             tmp_path, monkeypatch):
    monkeypatch.setenv(PVC_MOUNT_ROOT_ENV, str(tmp_path))  # where the controller Job mounts the seed's claim
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "seed.yaml").write_text(yaml.safe_dump(mergekit_config(tiny_family, 0.2, 0.9)))
    body = seeded_spec(tiny_family, [{"mergekit": mergekit_config(tiny_family, 0.7, 0.1)}, {"uri": "pvc://recipes/seed.yaml"}])
    body["metadata"]["namespace"] = namespace
    settings = ClusterSettings()
    search = kube.create(body)
    for account in render_namespace_accounts(namespace, settings):
        kube.create(account)
    kube.create(render_epoch_configmap(search, Epoch(1, MergeSearchSpec.model_validate(search["spec"]))))
    node = Node(kube, namespace, climbable_score)
    node.start()
    try:
        result = run_controller(kube, namespace, "seeded", 1, settings)
    finally:
        node.stop()

    first = next(e for e in ConfigMapHistory(kube, search, 1).events() if e["type"] == "ask")
    np.testing.assert_allclose(first["vectors"][:2], [[0.7, 0.1], [0.2, 0.9]])
    assert result.evaluations == 3 and result.best >= 0.7  # climbable_score is e0's weight: the first seed scored
