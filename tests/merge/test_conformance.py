"""Our export equals mergekit 0.1.5's own output for the same recipe (rendered by to_mergekit_config)."""

from __future__ import annotations

import pytest
import torch

from evomerge.catalogue.methods import METHODS
from evomerge.merge.groups import group_names
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.merge.sparsify import magnitude_mask
from evomerge.models.checkpoint import open_checkpoint

from tests.support.tiny_models import build_family

from .conftest import LAYERS, N_EXPERTS, differing, export_family

GENES = {name: method.genes for name, method in METHODS.items()}
SPLIT_GROUPS = group_names("layerGroups", LAYERS, 2, split_modules=True)
LAYER_GROUPS = group_names("layers", LAYERS)


def recipe_for(method: str, family, groups=("all",), experts: int = N_EXPERTS, **options) -> MergeRecipe:
    """Distinct values per expert, gene and group; weights are unnormalised (they sum above 1)."""
    n = 1 if METHODS[method].one_expert else experts
    expert_params = [
        {gene: {g: round(0.35 + 0.1 * i + 0.07 * j + (0.1 if gene == "weight" else 0.0), 4) for j, g in enumerate(groups)}
         for gene in GENES[method]}
        for i in range(n)
    ]
    return MergeRecipe(
        method=method,
        base_uri=str(family["base"]) if METHODS[method].needs_base else None,
        experts=tuple(ExpertWeights(f"expert{i}", str(family[f"expert{i}"]), expert_params[i]) for i in range(n)),
        groups=tuple(groups),
        options=options,
    )


@pytest.mark.parametrize("method", ["linear", "task_arithmetic", "ties", "slerp"])
@pytest.mark.parametrize("groups", [("all",), SPLIT_GROUPS], ids=["whole-model", "layer-groups-attn-mlp"])
def test_float32_export_is_bit_identical_to_mergekit(method, groups, family32, run_mergekit, tmp_path):
    recipe = recipe_for(method, family32, groups, normalize=False) if method != "slerp" else recipe_for(method, family32, groups)
    ours = export_family(recipe, family32, tmp_path / "ours")
    theirs = run_mergekit(recipe, tmp_path / "mergekit")
    assert differing(ours, theirs) == []


@pytest.mark.parametrize("method", ["linear", "task_arithmetic", "slerp"])
def test_bfloat16_export_is_bit_identical_to_mergekit(method, family16, run_mergekit, tmp_path):
    recipe = recipe_for(method, family16, LAYER_GROUPS)
    ours = export_family(recipe, family16, tmp_path / "ours")
    theirs = run_mergekit(recipe, tmp_path / "mergekit")
    assert {t.dtype for t in ours.values()} == {torch.bfloat16}
    assert differing(ours, theirs) == []


@pytest.mark.parametrize("densities", [(0.3, 0.3, 0.3), (0.3, 0.5, 0.9), (0.1, 0.7, 0.999)])
def test_ties_export_is_bit_identical_in_bfloat16_at_any_densities(densities, finetunes16, run_mergekit, tmp_path):
    """The exporter's default tie order is mergekit's: bf16 fine-tune deltas tie in large groups at every cut."""
    recipe = MergeRecipe("ties", str(finetunes16["base"]), tuple(
        ExpertWeights(f"expert{i}", str(finetunes16[f"expert{i}"]), {"weight": {"all": 1.0}, "density": {"all": d}})
        for i, d in enumerate(densities)), options={"normalize": True})
    assert differing(export_family(recipe, finetunes16, tmp_path / "ours"), run_mergekit(recipe, tmp_path / "mk")) == []


def test_ties_with_mergekit_tie_order_is_bit_identical_in_bfloat16(family16, run_mergekit, tmp_path):
    recipe = recipe_for("ties", family16, SPLIT_GROUPS, tie_order="mergekit")
    assert differing(export_family(recipe, family16, tmp_path / "ours"), run_mergekit(recipe, tmp_path / "mk")) == []


def test_ties_index_tie_order_differs_from_mergekit_only_where_magnitudes_tie_at_the_cut(family16, run_mergekit, tmp_path):
    """The resident merger's fast order: bf16 task vectors hold many equal magnitudes, and which of those at the cut
    survive is the only difference."""
    recipe = recipe_for("ties", family16, ("all",), tie_order="index")
    ours = export_family(recipe, family16, tmp_path / "ours")
    theirs = run_mergekit(recipe, tmp_path / "mk")
    b = open_checkpoint(family16["base"])
    experts = [open_checkpoint(family16[f"expert{i}"]) for i in range(N_EXPERTS)]
    differences = 0
    for name in differing(ours, theirs):
        at_cut = torch.zeros(ours[name].shape, dtype=torch.bool)
        for i, expert in enumerate(experts):
            delta = expert.read(name) - b.read(name)
            d = recipe.experts[i].value("density", "all")
            k_mask = magnitude_mask(delta, d)
            cut = delta.abs()[k_mask].min()
            at_cut |= delta.abs() == cut
        changed = ours[name] != theirs[name]
        assert not (changed & ~at_cut).any(), f"{name}: differs away from the tied cut magnitude"
        differences += int(changed.sum())
    assert differences > 0  # the comparison above ran on real differences


def test_embeddings_and_head_take_their_own_groups_values(family32, run_mergekit, tmp_path):
    """mergekit alone would resolve embeddings against the first slice and the head against the last."""
    values = {g: 0.3 for g in SPLIT_GROUPS} | {"embed": 0.9, "head": 1.3}

    def merged(groups, weights):
        recipe = MergeRecipe("task_arithmetic", str(family32["base"]), tuple(
            ExpertWeights(f"expert{i}", str(family32[f"expert{i}"]), {"weight": dict(weights)}) for i in range(N_EXPERTS)
        ), groups)
        return recipe, export_family(recipe, family32, tmp_path / f"{len(groups)}-{sorted(weights.values())}")

    recipe, ours = merged(SPLIT_GROUPS, values)
    assert differing(ours, run_mergekit(recipe, tmp_path / "mk")) == []
    _, embed_like = merged(("all",), {"all": 0.9})
    _, head_like = merged(("all",), {"all": 1.3})
    _, block_like = merged(("all",), {"all": 0.3})
    assert torch.equal(ours["model.embed_tokens.weight"], embed_like["model.embed_tokens.weight"])
    assert torch.equal(ours["lm_head.weight"], head_like["lm_head.weight"])
    assert torch.equal(ours["model.norm.weight"], head_like["model.norm.weight"])
    assert torch.equal(ours["model.layers.3.mlp.up_proj.weight"], block_like["model.layers.3.mlp.up_proj.weight"])


@pytest.mark.parametrize("options", [
    {"normalize": True, "lambda": 1.7},
    {"normalize": False, "rescale": True},
    {"dtype": "bfloat16"},
    {"dtype": "float32", "out_dtype": "float16"},
], ids=["normalize-lambda", "rescale", "dtype", "out-dtype"])
def test_shared_options_match_mergekit(options, family32, run_mergekit, tmp_path):
    recipe = recipe_for("ties", family32, ("all",), tie_order="mergekit", **options)
    ours = export_family(recipe, family32, tmp_path / "ours")
    theirs = run_mergekit(recipe, tmp_path / "mk")
    assert differing(ours, theirs) == []
    expected = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(options.get("out_dtype") or options.get("dtype"), torch.float32)
    assert {t.dtype for t in ours.values()} == {expected}


def test_weights_above_one_amplify_task_vectors(family32, tmp_path):
    """Sakana's regime: Σw ≈ 2 without normalisation moves further from the base than Σw = 1."""

    def distance(weight: float) -> float:
        recipe = MergeRecipe("task_arithmetic", str(family32["base"]), tuple(
            ExpertWeights(f"expert{i}", str(family32[f"expert{i}"]), {"weight": {"all": weight}}) for i in range(N_EXPERTS)
        ))
        merged = export_family(recipe, family32, tmp_path / f"w{weight}")
        base = open_checkpoint(family32["base"]).read("model.layers.0.mlp.up_proj.weight")
        return float((merged["model.layers.0.mlp.up_proj.weight"] - base).norm())

    assert distance(2 / 3) == pytest.approx(distance(1 / 3) * 2, rel=1e-4)


@pytest.fixture(scope="module")
def fine_tuned16(tmp_path_factory):
    """bf16 experts a fine-tune away from the base: task vectors ~5% of the weights' scale, so rounding to bf16
    leaves many zero and many equal magnitudes — where sort-based sparsifiers can disagree."""
    return build_family(tmp_path_factory.mktemp("finetuned16"), n_experts=N_EXPERTS, layers=LAYERS, seed=5,
                        noise=1e-3, dtype=torch.bfloat16, hidden=64)


@pytest.mark.parametrize("options", [{}, {"gamma": 0.05, "rescale": True, "normalize": True}],
                         ids=["mergekit-defaults", "gamma-rescale-normalize"])
@pytest.mark.parametrize("groups", [("all",), SPLIT_GROUPS], ids=["whole-model", "layer-groups-attn-mlp"])
def test_breadcrumbs_is_bit_identical_to_mergekit_on_bfloat16_fine_tune_deltas(options, groups, fine_tuned16, run_mergekit,
                                                                              tmp_path):
    """Breadcrumbs is deterministic (a sort, no random draw), so it agrees bit for bit, ties at both cuts included."""
    recipe = recipe_for("breadcrumbs", fine_tuned16, groups, **options)
    ours = export_family(recipe, fine_tuned16, tmp_path / "ours")
    theirs = run_mergekit(recipe, tmp_path / "mk")
    assert {t.dtype for t in ours.values()} == {torch.bfloat16}
    assert differing(ours, theirs) == []
    base = open_checkpoint(fine_tuned16["base"])
    name = "model.layers.1.mlp.up_proj.weight"
    delta = open_checkpoint(fine_tuned16["expert0"]).read(name) - base.read(name)
    magnitudes = delta.abs().flatten()
    assert magnitudes.unique().numel() < magnitudes.numel() / 4  # the deltas really tie, often
    assert not torch.equal(ours[name], run_mergekit(
        recipe_for("task_arithmetic", fine_tuned16, groups, **{k: v for k, v in options.items() if k != "gamma"}),
        tmp_path / "ta")[name])  # and the sparsifier really dropped entries
