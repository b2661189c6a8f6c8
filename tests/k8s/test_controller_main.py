"""The controller's pure parts: seeding a new epoch with the elite, and reading the model's depth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evomerge.k8s.controller_main import ControllerError, model_layers, search_genome, seed_vectors
from evomerge.search.genome import Genome
from evomerge.spec.merge_search import MergeSearchSpec


def genome(experts: list[str], method: str = "ties", groups=("blocks0", "blocks1")) -> Genome:
    return Genome.build(method, "pvc://m/base", [(n, f"pvc://m/{n}") for n in experts], tuple(groups), ["weight", "density"],
                        {"weight": (0.0, 1.0), "density": (0.1, 1.0)}, {})


def test_the_elite_keeps_its_values_and_a_new_expert_enters_at_its_low_bounds():
    before = genome(["a", "b"])
    elite = before.decode(np.array([0.7, 0.6, 0.9, 0.8, 0.2, 0.3, 0.5, 0.4]))

    vectors, notes = seed_vectors(genome(["a", "b", "c"]), [elite.to_dict()])

    after = genome(["a", "b", "c"])
    seeded = after.decode(vectors[0])
    assert notes == []
    assert {e.name: e.params for e in seeded.experts if e.name != "c"} == {e.name: e.params for e in elite.experts}
    assert seeded.experts[2].params == {"weight": {"blocks0": 0.0, "blocks1": 0.0}, "density": {"blocks0": 0.1, "blocks1": 0.1}}


def test_an_elite_of_another_method_is_not_seeded_and_the_reason_is_given():
    elite = genome(["a", "b"], method="task_arithmetic").decode(np.full(8, 0.5))

    vectors, notes = seed_vectors(genome(["a", "b"]), [elite.to_dict()])

    assert vectors is None and "merges with task_arithmetic" in notes[0]


def test_model_layers_reads_the_reference_config(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text(json.dumps({"num_hidden_layers": 12}))
    spec = MergeSearchSpec.model_validate({"baseModel": {"uri": str(tmp_path / "base")}, "objectives": [{"task": "t"}],
                                           "experts": [{"name": "a", "uri": str(tmp_path)}, {"name": "b", "uri": str(tmp_path)}]})
    assert model_layers(spec) == 12

    (tmp_path / "base" / "config.json").write_text("{}")
    with pytest.raises(ControllerError, match="num_hidden_layers is missing"):
        model_layers(spec)


def test_a_data_flow_genome_reads_every_path_models_depth_model_a_first(tmp_path):
    for name, layers in (("merged", 6), ("e0", 4), ("e1", 4)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"num_hidden_layers": layers}))
    spec = MergeSearchSpec.model_validate({
        "objectives": [{"task": "t"}],
        "experts": [{"name": "e0", "uri": str(tmp_path / "e0")}, {"name": "e1", "uri": str(tmp_path / "e1")}],
        "merge": {"dataFlow": {"enabled": True, "repeats": 2, "modelA": {"uri": str(tmp_path / "merged")}}},
    })
    genome = search_genome(spec)
    assert model_layers(spec) == 6
    path = genome.decode(np.full(genome.dim, 0.5)).layer_path
    assert path.models == ("modelA", "e0", "e1") and path.hops[0].model == "modelA"
    assert (path.hops[-1].model, path.hops[-1].layer) == ("modelA", 5)  # model A's own last layer ends the path
