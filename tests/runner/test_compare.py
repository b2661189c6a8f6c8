"""The comparison's reference rows: each expert alone and the uniform merge, as recipes of the catalogue's
reference method (with a base or without one)."""

from __future__ import annotations

import pytest
import torch

from evomerge.catalogue.methods import METHODS, reference_method
from evomerge.merge.apply import merge_tensor, method_options
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.runner.compare import reference_recipes


def template(base: str | None) -> MergeRecipe:
    experts = tuple(ExpertWeights(n, f"pvc://models/{n}", {"weight": {"all": 0.3}}) for n in ("a", "b", "c"))
    return MergeRecipe("ties" if base else "linear", base, experts, ("all",), {})


@pytest.mark.parametrize("base", ["pvc://models/base", None])
def test_each_expert_alone_and_the_uniform_merge_are_what_their_rows_say(base):
    torch.manual_seed(0)
    tensors = {n: torch.randn(4, 6) for n in ("base", "a", "b", "c")}
    recipes = reference_recipes(template(base))

    assert set(recipes) == {"expert a", "expert b", "expert c", "uniform merge"}
    for recipe in recipes.values():
        assert recipe.method == reference_method(with_base=base is not None).name
        assert METHODS[recipe.method].needs_base == (base is not None)

    def merged(recipe: MergeRecipe) -> torch.Tensor:
        return merge_tensor(recipe, "model.embed_tokens.weight", tensors["base"] if base else None,
                            [tensors[n] for n in ("a", "b", "c")], 1, method_options(recipe))

    for n in ("a", "b", "c"):
        torch.testing.assert_close(merged(recipes[f"expert {n}"]), tensors[n])
    torch.testing.assert_close(merged(recipes["uniform merge"]), (tensors["a"] + tensors["b"] + tensors["c"]) / 3)


def test_the_catalogue_names_one_reference_method_with_a_base_and_one_without():
    for with_base in (True, False):
        (method,) = [m for m in METHODS.values() if m.reference and m.needs_base == with_base]
        assert method is reference_method(with_base) and method.genes == ("weight",)
