"""The resident merger writes exactly what the exporter writes, into a live model, candidate after candidate."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import AutoModelForCausalLM

from evomerge.catalogue.methods import METHODS
from evomerge.merge.groups import group_names
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.merge import kernels, resident
from evomerge.merge.resident import ResidentMerger
from evomerge.models.checkpoint import open_checkpoint

from .conftest import LAYERS, N_EXPERTS, export_family

GROUPS = group_names("layerGroups", LAYERS, 2, split_modules=True)
GENES = {name: method.genes for name, method in METHODS.items()}


def candidate(method: str, family, shift: float = 0.0, **options) -> MergeRecipe:
    n = 1 if METHODS[method].one_expert else N_EXPERTS
    experts = tuple(
        ExpertWeights(f"expert{i}", str(family[f"expert{i}"]), {
            gene: {g: round(0.3 + 0.1 * i + 0.04 * j + shift, 4) for j, g in enumerate(GROUPS)} for gene in GENES[method]
        })
        for i in range(n)
    )
    return MergeRecipe(method, str(family["base"]) if METHODS[method].needs_base else None, experts, GROUPS, {"seed": 9, **options})


def merger_for(family, dtype: torch.dtype, **kwargs) -> tuple[ResidentMerger, torch.nn.Module]:
    base = open_checkpoint(family["base"])
    experts = {f"expert{i}": open_checkpoint(family[f"expert{i}"]) for i in range(N_EXPERTS)}
    model = AutoModelForCausalLM.from_pretrained(family["base"], dtype=dtype).eval()
    return ResidentMerger(base, experts, LAYERS, **kwargs), model


@pytest.mark.parametrize("method", list(GENES))
@pytest.mark.parametrize("family_name,dtype", [("family32", torch.float32), ("family16", torch.bfloat16)])
def test_resident_merge_equals_export(method, family_name, dtype, request, tmp_path):
    """In the resident merger's own (fast) tie order; the exporter's default, mergekit's, is tested below."""
    family = request.getfixturevalue(family_name)
    recipe = candidate(method, family)
    exported = export_family(MergeRecipe(recipe.method, recipe.base_uri, recipe.experts, recipe.groups,
                                         {**recipe.options, "tie_order": "index"}), family, tmp_path / "out")
    for cache_masks in (True, False):
        merger, model = merger_for(family, dtype, cache_masks=cache_masks)
        target = model.state_dict()
        merger.merge_into(recipe, target)
        assert [n for n in exported if not torch.equal(exported[n], target[n])] == [], cache_masks


@pytest.mark.parametrize("options", [{"tie_order": "mergekit"}, {"mask_rng": "mergekit"}], ids=["tie-order", "rng"])
def test_resident_mergekit_modes_equal_export(options, family16, tmp_path):
    method = "ties" if "tie_order" in options else "dare_ties"
    recipe = candidate(method, family16, **options)
    exported = export_family(recipe, family16, tmp_path / "out")
    merger, model = merger_for(family16, torch.bfloat16)
    target = model.state_dict()
    merger.merge_into(recipe, target)
    assert all(torch.equal(exported[n], target[n]) for n in exported)


@pytest.mark.parametrize("options", [{"tie_order": "mergekit"}, {"mask_rng": "mergekit"}], ids=["ranks", "uniforms"])
def test_the_torch_paths_masks_are_kept_only_where_they_fit(options, family16, tmp_path, monkeypatch, caplog):
    """Ranks or uniforms take 4 bytes per element and expert: by default they are kept when they fit in half the
    memory free besides the task vectors, and otherwise drawn again for each candidate — with the same merge.
    (On CPU the fused kernels replay torch's tie order without ranks; the torch path is a GPU's.)"""
    monkeypatch.setattr(kernels, "available", lambda *a, **k: False)
    caplog.set_level(logging.INFO, logger=resident.__name__)
    method = "ties" if "tie_order" in options else "dare_ties"
    recipes = [candidate(method, family16, shift, **options) for shift in (0.0, 0.05)]
    exported = [export_family(r, family16, tmp_path / f"out{i}") for i, r in enumerate(recipes)]
    needed = sum(t.numel() for t in exported[0].values()) * N_EXPERTS * 4
    held = sum(t.numel() for t in exported[0].values()) * (N_EXPERTS + 1) * 2
    for free, kept in ((held + 2 * needed, True), (held + 2 * needed - 1, False)):
        monkeypatch.setattr(resident, "available_bytes", lambda device, free=free: free)
        merger, model = merger_for(family16, torch.bfloat16)
        target = model.state_dict()
        for recipe, expected in zip(recipes, exported):
            merger.merge_into(recipe, target)
            assert all(torch.equal(expected[n], target[n]) for n in expected)
        cached = [p.ranks if "tie_order" in options else p.uniforms for p in merger._prepared.values() if p.deltas is not None]
        assert cached and all((c is not None) == kept for c in cached)
    assert "masks are drawn again for each candidate" in caplog.text


def test_the_fused_kernels_caches_never_ask_for_free_memory(family16, tmp_path, monkeypatch):
    """Their caches are a histogram or bucket sums per tensor: kept whatever the device has free."""
    def no_query(device):
        raise AssertionError("the fused path asked for free memory")

    monkeypatch.setattr(resident, "available_bytes", no_query)
    recipe = candidate("ties", family16)
    merger, model = merger_for(family16, torch.bfloat16)
    target = model.state_dict()
    merger.merge_into(recipe, target)
    assert all(p.fused is not None for p in merger._prepared.values() if p.deltas is not None)


def test_candidates_re_merge_in_place_and_change_the_live_model(family32, tmp_path):
    merger, model = merger_for(family32, torch.float32)
    target = model.state_dict()
    tokens = torch.tensor([[2, 10, 11, 9, 5]])
    first, second = candidate("ties", family32), candidate("ties", family32, shift=0.2)
    merger.merge_into(first, target)
    with torch.no_grad():
        logits_first = model(tokens).logits
    merger.merge_into(second, target)
    with torch.no_grad():
        logits_second = model(tokens).logits
    merger.merge_into(first, target)
    with torch.no_grad():
        logits_again = model(tokens).logits
    assert not torch.allclose(logits_first, logits_second)
    assert torch.equal(logits_first, logits_again)
    exported = AutoModelForCausalLM.from_pretrained(_export_dir(first, family32, tmp_path), dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.equal(exported(tokens).logits, logits_first)


def test_recipe_with_an_unknown_expert_is_refused(family32):
    merger, model = merger_for(family32, torch.float32)
    recipe = candidate("task_arithmetic", family32)
    stranger = MergeRecipe(recipe.method, recipe.base_uri, (ExpertWeights("stranger", "/x", {"weight": {"all": 1.0}}),))
    with pytest.raises(ValueError, match="stranger"):
        merger.merge_into(stranger, model.state_dict())


def _export_dir(recipe, family, tmp_path):
    export_family(recipe, family, tmp_path / "exported")
    return tmp_path / "exported"
