"""DARE: mergekit's own masks when seeded the same way; the default counter masks agree statistically."""

from __future__ import annotations

import pytest
import torch

from evomerge.merge.groups import group_of
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.merge.sparsify import tensor_seed
from evomerge.models.checkpoint import open_checkpoint

from .conftest import LAYERS, N_EXPERTS, export_family

DENSITIES = (1.0, 0.4, 0.7)  # the first draws nothing, so the others' stream offsets are exercised too


def dare_recipe(method: str, family, densities=DENSITIES, seed: int = 11, **options) -> MergeRecipe:
    groups = ("embed", "blocks0", "blocks1", "head")
    experts = tuple(
        ExpertWeights(f"expert{i}", str(family[f"expert{i}"]), {
            "weight": {g: 0.5 + 0.1 * i + 0.05 * j for j, g in enumerate(groups)},
            "density": {g: densities[i] for g in groups},
        })
        for i in range(len(densities))
    )
    return MergeRecipe(method, str(family["base"]), experts, groups, {"seed": seed, **options})


@pytest.mark.parametrize("method", ["dare_ties", "dare_linear"])
@pytest.mark.parametrize("family_name", ["family32", "family16"])
def test_mergekit_rng_reproduces_mergekits_masks_tensor_by_tensor(method, family_name, request, tmp_path):
    from mergekit.merge_methods.api import merge_tensors

    family = request.getfixturevalue(family_name)
    recipe = dare_recipe(method, family, mask_rng="mergekit")
    ours = export_family(recipe, family, tmp_path / "ours")
    base = open_checkpoint(family["base"])
    experts = [open_checkpoint(family[f"expert{i}"]) for i in range(N_EXPERTS)]
    for name in base.names:
        group = group_of(name, recipe.groups, LAYERS)
        torch.manual_seed(tensor_seed(11, name))  # what mergekit's global RNG would be, seeded per tensor
        theirs = merge_tensors(
            [base.read(name)] + [e.read(name) for e in experts], method, base_index=0, name=name,
            parameters={"weight": [e.value("weight", group) for e in recipe.experts],
                        "density": [e.value("density", group) for e in recipe.experts]},
        )
        assert torch.equal(ours[name], theirs), name


@pytest.mark.parametrize("density", [0.3, 0.8])
def test_counter_masks_match_mergekits_mask_rate_and_rescaling(density, family32, run_mergekit, tmp_path):
    """One expert at weight 1: the merge minus the base is the rescaled, masked task vector on both sides."""
    recipe = MergeRecipe("dare_linear", str(family32["base"]), (
        ExpertWeights("expert0", str(family32["expert0"]), {"weight": {"all": 1.0}, "density": {"all": density}}),
    ), options={"seed": 3})
    ours = export_family(recipe, family32, tmp_path / "ours")
    theirs = run_mergekit(recipe, tmp_path / "mk", seed=3)
    base = open_checkpoint(family32["base"])
    expert = open_checkpoint(family32["expert0"])
    rates = {"ours": [], "mergekit": []}
    for name in base.names:
        b, delta = base.read(name), expert.read(name) - base.read(name)
        for side, merged in (("ours", ours[name]), ("mergekit", theirs[name])):
            kept = merged != b
            rates[side].append(float(kept.float().mean()))
            # L1 rescaling: the kept entries carry the whole task vector's L1 mass
            assert float((merged - b).abs().sum()) == pytest.approx(float(delta.abs().sum()), rel=1e-4), (side, name)
            # kept entries are the task vector times one common factor (up to rounding of b + f·δ − b)
            factor = (merged - b)[kept] / delta[kept]
            assert torch.allclose(factor, factor.median().expand_as(factor), rtol=2e-2)
    for side in rates:
        assert sum(rates[side]) / len(rates[side]) == pytest.approx(density, abs=0.02), side
    assert not torch.equal(ours["model.layers.0.mlp.up_proj.weight"], theirs["model.layers.0.mlp.up_proj.weight"])


def test_same_seed_same_merge_other_seed_other_masks(family16, tmp_path):
    a = export_family(dare_recipe("dare_ties", family16, seed=1), family16, tmp_path / "a")
    b = export_family(dare_recipe("dare_ties", family16, seed=1), family16, tmp_path / "b")
    c = export_family(dare_recipe("dare_ties", family16, seed=2), family16, tmp_path / "c")
    name = "model.layers.1.self_attn.q_proj.weight"
    assert torch.equal(a[name], b[name])
    assert not torch.equal(a[name], c[name])
