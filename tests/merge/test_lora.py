"""LoRA experts as task vectors over the base, and a candidate as one combined adapter served by peft."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from evomerge.merge.adapter import combined_adapter
from evomerge.merge.apply import RecipeError
from evomerge.merge.export import export_merge
from evomerge.merge.groups import group_names
from evomerge.merge.inputs import open_recipe_inputs
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.models.checkpoint import CheckpointError, open_checkpoint
from evomerge.models.lora import LoraExpert, open_lora_adapter
from tests.support.tiny_models import build_lora_adapter

from .conftest import LAYERS, differing, load_dir

TOKENS = torch.tensor([[2, 10, 11, 9, 5]])


@pytest.fixture(scope="module")
def adapters(family32, tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("lora")
    return {
        "lora0": build_lora_adapter(family32["base"], root / "lora0", rank=4, seed=1),
        "lora1": build_lora_adapter(family32["base"], root / "lora1", rank=2, alpha=4.0, seed=2, targets=("q_proj", "o_proj", "up_proj")),
    }


def lora_recipe(method, family, adapters, groups=("all",), **options) -> MergeRecipe:
    weights = {"lora0": 0.9, "lora1": 0.6}
    return MergeRecipe(method, str(family["base"]), tuple(
        ExpertWeights(name, str(path), {"weight": {g: weights[name] + 0.05 * j for j, g in enumerate(groups)}})
        for name, path in adapters.items()
    ), groups, options)


def test_lora_expert_weights_equal_peft_merge_and_unload(family32, adapters):
    expert = LoraExpert(open_checkpoint(family32["base"]), open_lora_adapter(adapters["lora0"]))
    base = AutoModelForCausalLM.from_pretrained(family32["base"], dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapters["lora0"]).merge_and_unload().state_dict()
    changed = 0
    for name in expert.names:
        assert torch.equal(expert.read(name), merged[name]), name
        changed += name in expert.adapter.modules
    assert changed == 3 * LAYERS  # q, v, down in every layer


def test_task_arithmetic_over_lora_experts_equals_mergekit_with_base_plus_lora(family32, adapters, run_mergekit, tmp_path):
    recipe = lora_recipe("task_arithmetic", family32, adapters, group_names("layerGroups", LAYERS, 2))
    base, experts = open_recipe_inputs(recipe)
    export_merge(recipe, base, experts, tmp_path / "ours")
    theirs = run_mergekit(recipe, tmp_path / "mk", lora_merge_cache=str(tmp_path / "lora-cache"))
    assert differing(load_dir(tmp_path / "ours"), theirs) == []


@pytest.mark.parametrize("method,options", [("task_arithmetic", {"lambda": 1.5}), ("task_arithmetic", {"normalize": True}),
                                            ("linear", {"normalize": True})])
def test_combined_adapter_applied_by_peft_equals_the_dense_merge(method, options, family32, adapters, tmp_path):
    groups = group_names("layerGroups", LAYERS, 2, split_modules=True)
    recipe = lora_recipe(method, family32, adapters, groups, **options)
    base, experts = open_recipe_inputs(recipe)
    export_merge(recipe, base, experts, tmp_path / "dense")
    dense = AutoModelForCausalLM.from_pretrained(tmp_path / "dense", dtype=torch.float32).eval()
    out = combined_adapter(recipe, {n: open_lora_adapter(p) for n, p in adapters.items()}, LAYERS, tmp_path / "adapter")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 6 and config["rank_pattern"]  # rank 4 + 2 where both adapt, less elsewhere
    served = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(family32["base"], dtype=torch.float32), out).eval()
    with torch.no_grad():
        torch.testing.assert_close(served(TOKENS).logits, dense(TOKENS).logits, rtol=1e-5, atol=1e-5)
    weights = served.merge_and_unload().state_dict()
    for name, tensor in dense.state_dict().items():
        torch.testing.assert_close(weights[name], tensor, rtol=1e-5, atol=1e-6)


def test_sparsifying_methods_and_unnormalised_linear_are_not_low_rank(family32, adapters, tmp_path):
    loaded = {n: open_lora_adapter(p) for n, p in adapters.items()}
    with pytest.raises(RecipeError, match="ties is not low-rank"):
        combined_adapter(lora_recipe("ties", family32, adapters), loaded, LAYERS, tmp_path / "a")
    with pytest.raises(RecipeError, match="linear without normalize"):
        combined_adapter(lora_recipe("linear", family32, adapters, normalize=False), loaded, LAYERS, tmp_path / "b")


def test_unsupported_adapters_are_refused(adapters, tmp_path):
    config = json.loads((adapters["lora0"] / "adapter_config.json").read_text())
    (tmp_path / "dora").mkdir()
    (tmp_path / "dora" / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(CheckpointError, match="use_dora is set"):
        open_lora_adapter(tmp_path / "dora")
    with pytest.raises(CheckpointError, match="this is a LoRA adapter"):
        open_checkpoint(adapters["lora0"])
