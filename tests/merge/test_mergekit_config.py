"""mergekit's format both ways: the config a recipe renders to (its results are compared with ours in
test_conformance), and the way back, the round trip and the refusals, checked by running mergekit 0.1.5 itself
on tiny local models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from evomerge.merge.export import export_merge
from evomerge.merge.groups import group_names
from evomerge.merge.layer_path import MERGED, Hop, LayerPath
from evomerge.merge.mergekit_config import (
    MergekitConfigError,
    from_mergekit_config,
    mergekit_config_for,
    mergekit_yaml,
    recipe_to_mergekit,
    reference_uri,
    to_mergekit_config,
)
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.models.checkpoint import open_checkpoint

DEEP_LAYERS = 4
GROUPS = ("embed", "blocks0", "blocks1", "head")
SPLIT = ("embed", "blocks0.attn", "blocks0.mlp", "blocks1.attn", "blocks1.mlp", "head")


def run_mergekit(config: dict, out: Path) -> dict[str, torch.Tensor]:
    """mergekit's own merge of a config, after a trip through the YAML text a user would save."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    parsed = MergeConfiguration.model_validate(yaml.safe_load(mergekit_yaml(config)))
    run_merge(parsed, str(out), options=MergeOptions(copy_tokenizer=False, write_model_card=False, quiet=True))
    return load_file(out / "model.safetensors")


def run_evomerge(recipe: MergeRecipe, family: dict[str, Path], out: Path) -> dict[str, torch.Tensor]:
    experts = {e.name: open_checkpoint(Path(e.uri.removeprefix("file://"))) for e in recipe.experts}
    base = open_checkpoint(family["base"]) if recipe.base_uri else None
    export_merge(recipe, base, experts, out)
    return load_file(out / "model.safetensors")


def assert_same_tensors(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> None:
    assert ours.keys() == theirs.keys()
    different = [name for name in ours if not torch.equal(ours[name], theirs[name])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def recipe_for(family, method: str, groups: tuple[str, ...], genes: dict[str, tuple[float, float]], options: dict,
               with_base: bool = True) -> MergeRecipe:
    experts = []
    for i, name in enumerate(("expert0", "expert1")):
        params = {
            gene: {g: round(low + (high - low) * ((3 * i + 5 * j) % 7) / 6, 4) for j, g in enumerate(groups)}
            for gene, (low, high) in genes.items()
        }
        uri = str(family[name]) if i == 0 else f"file://{family[name]}"
        experts.append(ExpertWeights(name, uri, params))
    if method == "slerp":
        experts = experts[:1]
    return MergeRecipe(method, str(family["base"]) if with_base else None, tuple(experts), groups, options)


CASES = {
    "task_arithmetic over layer groups": ("task_arithmetic", GROUPS, {"weight": (0.1, 1.2)}, {"normalize": False, "lambda": 0.9}),
    "ties with attention/MLP split and density": ("ties", SPLIT, {"weight": (0.2, 1.0), "density": (0.3, 0.9)}, {"lambda": 1.0}),
    "linear, one group": ("linear", ("all",), {"weight": (0.2, 0.8)}, {"normalize": True}),
    "slerp over layer groups": ("slerp", GROUPS, {"t": (0.1, 0.9)}, {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_recipe_survives_the_round_trip_through_mergekit(case, deep_family):
    method, groups, genes, options = CASES[case]
    recipe = recipe_for(deep_family, method, groups, genes, options, with_base=method != "linear")
    config = yaml.safe_load(mergekit_yaml(mergekit_config_for(recipe, deep_family["base"])))
    back = from_mergekit_config(config, DEEP_LAYERS)
    assert (back.method, back.groups) == (recipe.method, recipe.groups)
    assert back.base_uri == (str(deep_family["base"]) if recipe.base_uri else None)
    assert [e.name for e in back.experts] == [e.name for e in recipe.experts]
    assert [e.params for e in back.experts] == [e.params for e in recipe.experts]
    assert {k: v for k, v in back.options.items() if k in options} == options


def test_a_gradient_config_becomes_per_layer_groups_and_merges_like_mergekit(deep_family, tmp_path):
    config = {
        "merge_method": "task_arithmetic",
        "base_model": str(deep_family["base"]),
        "models": [
            {"model": str(deep_family["expert0"]), "parameters": {"weight": [0.0, 1.0]}},
            {"model": str(deep_family["expert1"]), "parameters": {"weight": 0.5}},
        ],
        "parameters": {"normalize": False},
    }
    recipe = from_mergekit_config(config, num_layers=DEEP_LAYERS)
    assert recipe.groups == ("embed", "blocks0", "blocks1", "blocks2", "blocks3", "head")
    ramp = recipe.experts[0].params["weight"]
    assert [ramp[f"blocks{i}"] for i in range(4)] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert ramp["embed"] == ramp["head"] == 0.0  # mergekit resolves embeddings and head at t = 0
    assert set(recipe.experts[1].params["weight"].values()) == {0.5}
    assert_same_tensors(run_evomerge(recipe, deep_family, tmp_path / "ours"), run_mergekit(config, tmp_path / "mergekit"))


def test_an_mlp_filter_becomes_split_groups_and_merges_like_mergekit(deep_family, tmp_path):
    config = {
        "merge_method": "ties",
        "base_model": str(deep_family["base"]),
        "models": [
            {"model": str(deep_family["expert0"]), "parameters": {"weight": [{"filter": "mlp", "value": 0.3}, {"value": 0.8}], "density": 0.5}},
            {"model": str(deep_family["expert1"]), "parameters": {"weight": 0.6, "density": 0.7}},
        ],
    }
    recipe = from_mergekit_config(config)
    assert recipe.groups == ("embed", "blocks0.attn", "blocks0.mlp", "head")
    assert recipe.experts[0].params["weight"] == {"embed": 0.8, "blocks0.attn": 0.8, "blocks0.mlp": 0.3, "head": 0.8}
    assert_same_tensors(run_evomerge(recipe, deep_family, tmp_path / "ours"), run_mergekit(config, tmp_path / "mergekit"))


def test_a_filter_finer_than_evomerges_groups_is_refused_with_the_tensors():
    config = {"merge_method": "ties", "base_model": "/m/base",
              "models": [{"model": "/m/a", "parameters": {"weight": [{"filter": "self_attn", "value": 0.2}, {"value": 0.7}]}}]}
    with pytest.raises(MergekitConfigError, match="input_layernorm"):
        from_mergekit_config(config)


@pytest.mark.parametrize("config, message", [
    ({"merge_method": "della", "base_model": "/m/b", "models": [{"model": "/m/a"}]}, "merge_method 'della'"),
    ({"merge_method": "ties", "models": [{"model": "/m/a", "parameters": {"weight": 1}}]}, "needs a base model"),
    ({"merge_method": "ties", "base_model": "/m/b", "models": [{"model": "/m/a", "parameters": {"weight": [0, 1]}}]}, "pass num_layers"),
    ({"merge_method": "linear", "slices": [{"sources": [{"model": "/m/a", "layer_range": [0, 2]}, {"model": "/m/b", "layer_range": [2, 4]}]}]},
     "frankenmerge"),
    ({"merge_method": "linear", "slices": [{"sources": [{"model": "/m/a", "layer_range": [1, 2]}]}]}, "does not continue at layer 0"),
    ({"merge_method": "ties", "base_model": "/m/b", "models": [{"model": "org/m+org/lora", "parameters": {"weight": 1}}]}, "LoRA"),
    ({"merge_method": "ties", "base_model": "/m/b", "models": [{"model": "/m/a", "parameters": {"weight": 1}}],
      "parameters": {"gamma": 0.1}}, "gamma"),
    ({"merge_method": "ties", "base_model": "/m/b", "models": [{"model": "/m/a", "parameters": {"weight": 1}}],
      "tokenizer_source": "union"}, "tokenizer source 'union'"),
])
def test_configs_evomerge_cannot_read_say_why(config, message):
    with pytest.raises(MergekitConfigError, match=message):
        from_mergekit_config(config)


def test_model_references_map_to_uris_and_back():
    assert reference_uri("mistralai/Mistral-7B-v0.1@abc123") == "hf://mistralai/Mistral-7B-v0.1@abc123"
    assert reference_uri("/models/base") == "/models/base"
    recipe = MergeRecipe("task_arithmetic", "hf://org/base@v2", (ExpertWeights("a", "hf://org/a", {"weight": {"all": 1.0}}),))
    back = from_mergekit_config(recipe_to_mergekit(recipe, 2))
    assert back.base_uri == "hf://org/base@v2" and back.experts[0].uri == "hf://org/a"


def test_a_path_over_the_recipes_own_merge_is_refused():
    experts = (ExpertWeights("a", "/m/a", {"weight": {"all": 1.0}}),)
    path = LayerPath((MERGED, "a"), (Hop(MERGED, 0), Hop("a", 1)))
    with pytest.raises(MergekitConfigError, match="two mergekit runs"):
        recipe_to_mergekit(MergeRecipe("task_arithmetic", "/m/b", experts, layer_path=path), 2)


def test_dare_exports_its_densities_per_group(deep_family):
    recipe = recipe_for(deep_family, "dare_ties", GROUPS, {"weight": (0.2, 1.0), "density": (0.3, 0.9)}, {"rescale": True})
    config = mergekit_config_for(recipe, deep_family["base"])
    assert config["merge_method"] == "dare_ties" and config["parameters"]["rescale"] is True
    first = config["slices"][0]["sources"][1]["parameters"]["density"]
    assert first[0] == {"filter": "layers.", "value": recipe.experts[0].params["density"]["blocks0"]}
    assert first[-1] == {"value": recipe.experts[0].params["density"]["head"]}
    assert from_mergekit_config(config, DEEP_LAYERS).experts[0].params == recipe.experts[0].params


def test_layer_groups_become_slices_with_first_match_filters():
    groups = group_names("layerGroups", 4, 2, split_modules=True)
    weights = {g: float(i) for i, g in enumerate(groups)}  # embed 0, blocks0.attn 1, blocks0.mlp 2, ..., head 5
    recipe = MergeRecipe("ties", "/models/base", (
        ExpertWeights("a", "/models/a", {"weight": weights, "density": {"all": 0.5}}),
    ), groups, {"normalize": False, "dtype": "bfloat16"})
    config = to_mergekit_config(recipe, 4)
    yaml.safe_load(yaml.safe_dump(config))  # plain data
    assert config["merge_method"] == "ties" and config["base_model"] == "/models/base" and config["dtype"] == "bfloat16"
    assert config["parameters"] == {"normalize": False, "rescale": False, "lambda": 1.0}
    first, second = config["slices"]
    assert [s["layer_range"] for s in first["sources"]] == [[0, 2], [0, 2]]
    assert [s["layer_range"] for s in second["sources"]] == [[2, 4], [2, 4]]
    weight = second["sources"][1]["parameters"]["weight"]
    values = {entry.get("filter"): entry["value"] for entry in weight}
    assert values["self_attn"] == 3.0 and values["layers."] == 4.0 and values["embed_tokens"] == 0.0 and values[None] == 5.0
    assert weight[-1] == {"value": 5.0}  # the fallback (final norm, head) comes last
    assert second["sources"][1]["parameters"]["density"][-1] == {"value": 0.5}


def test_slerp_puts_t_on_the_slice_and_linear_has_no_base():
    slerp = MergeRecipe("slerp", "/b", (ExpertWeights("a", "/a", {"t": {"all": 0.3}}),))
    assert to_mergekit_config(slerp, 2)["parameters"] == {"t": 0.3}
    linear = MergeRecipe("linear", "/b", (ExpertWeights("a", "/a", {"weight": {"all": 2.0}}),))
    config = to_mergekit_config(linear, 2)
    assert "base_model" not in config and config["models"] == [{"model": "/a", "parameters": {"weight": 2.0}}]
    assert config["parameters"] == {"normalize": True}
