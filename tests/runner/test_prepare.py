"""The prelude `evomerge run` and the cluster's controller share: inputs checked, depth read, genome and seeds."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from evomerge.models.checkpoint import CheckpointError
from evomerge.models.uris import PVC_MOUNT_ROOT_ENV
from evomerge.runner.prepare import prepare
from evomerge.runner.seed_recipes import SeedRecipeError
from evomerge.spec.merge_search import MergeSearchSpec
from tests.support.tiny_models import build_family


def spec_over(family, **fields) -> MergeSearchSpec:
    return MergeSearchSpec.model_validate({
        "baseModel": {"uri": str(family["base"])}, "objectives": [{"task": "t"}],
        "experts": [{"name": "a", "uri": str(family["expert0"])}, {"name": "b", "uri": str(family["expert1"])}],
        **fields,
    })


def test_the_depth_comes_from_the_base_config_and_a_config_without_it_is_refused(tiny_family, tmp_path):
    assert prepare(spec_over(tiny_family)).num_layers == 2
    family = {name: shutil.copytree(path, tmp_path / name) for name, path in tiny_family.items()}
    config = json.loads((family["base"] / "config.json").read_text())
    del config["num_hidden_layers"]
    (family["base"] / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="config.json has no num_hidden_layers"):
        prepare(spec_over(family))


def test_an_expert_of_another_architecture_is_refused_before_any_evaluation(tiny_family, tmp_path):
    other = build_family(tmp_path / "wide", hidden=64)
    with pytest.raises(CheckpointError, match="expert 'b': config hidden_size is 64, base has 32"):
        prepare(spec_over({**tiny_family, "expert1": other["expert0"]}))


@pytest.fixture(scope="module")
def deep_model_a(tmp_path_factory):
    return build_family(tmp_path_factory.mktemp("deep"), n_experts=1, layers=3, seed=7)["base"]


def test_a_data_flow_genome_reads_every_path_models_depth_model_a_first(tiny_family, deep_model_a):
    spec = spec_over(tiny_family, merge={"dataFlow": {"enabled": True, "repeats": 2, "modelA": {"uri": str(deep_model_a)}}})
    prepared = prepare(spec)
    assert prepared.num_layers == 3
    path = prepared.genome.decode(np.full(prepared.genome.dim, 0.5)).layer_path
    assert path.models == ("modelA", "a", "b") and path.hops[0].model == "modelA"
    assert (path.hops[-1].model, path.hops[-1].layer) == ("modelA", 2)  # model A's own last layer ends the path


def test_a_data_flow_path_of_models_of_different_widths_is_refused(tiny_family, tmp_path):
    """The controller skipped this check once; both processes now refuse it before any evaluation."""
    wide = build_family(tmp_path / "wide", n_experts=1, hidden=64)["base"]
    spec = spec_over(tiny_family, merge={"dataFlow": {"enabled": True, "modelA": {"uri": str(wide)}}})
    with pytest.raises(CheckpointError, match="path model 'a' has hidden_size 32, model A .* has 64"):
        prepare(spec)


def test_a_seed_that_cannot_be_read_names_its_field(tiny_family, tmp_path, monkeypatch):
    monkeypatch.setenv(PVC_MOUNT_ROOT_ENV, str(tmp_path))
    config = {"merge_method": "task_arithmetic", "base_model": str(tiny_family["base"]),
              "models": [{"model": str(tiny_family["expert0"]), "parameters": {"weight": 0.5}},
                         {"model": str(tiny_family["expert1"]), "parameters": {"weight": 0.5}}]}
    spec = spec_over(tiny_family, search={"seeds": [{"mergekit": config}, {"uri": "pvc://recipes/absent.yaml"}]})
    with pytest.raises(SeedRecipeError, match=r"^spec.search.seeds\[1\]: 'pvc://recipes/absent.yaml': .* is not a file"):
        prepare(spec)
    prepared = prepare(spec_over(tiny_family, search={"seeds": [{"mergekit": config}]}))
    assert prepared.genome.decode(prepared.seed_recipes[0]).experts[0].params == {"weight": {"all": 0.5}}
