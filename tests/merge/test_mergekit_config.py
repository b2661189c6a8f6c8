"""The mergekit config a recipe renders to (its results are compared with ours in test_conformance)."""

from __future__ import annotations

import yaml

from evomerge.merge.groups import group_names
from evomerge.merge.mergekit_config import to_mergekit_config
from evomerge.merge.recipe import ExpertWeights, MergeRecipe


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
