"""Which candidates are one combined LoRA adapter over the base: the spec predicate and the recipe's refusals."""

from __future__ import annotations

import pytest

from evomerge.merge.adapter import recipe_adapter
from evomerge.merge.adapter_rules import adapter_refusal, adapter_servable
from evomerge.merge.apply import RecipeError
from evomerge.merge.inputs import open_recipe_inputs
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.spec.merge_search import MergeSearchSpec
from tests.support.tiny_models import build_lora_adapter


def search(method: str = "task_arithmetic", formats: tuple[str, str] = ("lora", "lora"), **merge) -> MergeSearchSpec:
    return MergeSearchSpec.model_validate({
        "baseModel": {"uri": "pvc://models/base"},
        "experts": [{"name": n, "uri": f"pvc://models/{n}", "format": f} for n, f in zip("ab", formats)],
        "merge": {"method": method, **merge},
        "objectives": [{"task": "t"}],
    })


@pytest.mark.parametrize("spec", [search(), search(normalize=True), search("linear"), search("linear", normalize=True)])
def test_linear_and_task_arithmetic_over_lora_experts_are_servable(spec):
    assert adapter_servable(spec) and adapter_refusal(spec) is None


@pytest.mark.parametrize("spec, field", [
    (search("ties", evolve=["weight", "density"]), "merge.method: ties is not low-rank"),
    (search("dare_linear"), "merge.method: dare_linear is not low-rank"),
    (search("dare_ties"), "merge.method: dare_ties is not low-rank"),
    (search("linear", normalize=False), "merge.normalize: linear without normalize"),
    (search(formats=("lora", "full")), "experts[1].format: 'b' is a full checkpoint"),
])
def test_refusals_name_the_spec_field_to_change(spec, field):
    assert not adapter_servable(spec)
    assert field in adapter_refusal(spec)


def test_a_recipe_with_a_full_expert_is_refused_by_name(tiny_family, tmp_path):
    lora = build_lora_adapter(tiny_family["base"], tmp_path / "lora")
    recipe = MergeRecipe("task_arithmetic", str(tiny_family["base"]), (
        ExpertWeights("lora", str(lora), {"weight": {"all": 0.5}}),
        ExpertWeights("full", str(tiny_family["expert0"]), {"weight": {"all": 0.5}}),
    ))
    base, inputs = open_recipe_inputs(recipe)
    with pytest.raises(RecipeError, match=r"recipe experts\[1\] 'full' .* is a full checkpoint, not a LoRA adapter"):
        recipe_adapter(recipe, base, inputs, tmp_path / "out")
    assert not (tmp_path / "out").exists()

