"""Layer paths: decoding, running in process, exporting with folded scales, and mergekit's passthrough."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from evomerge.merge.dataflow import PathModel, check_foldable
from evomerge.merge.export import export_merge
from evomerge.merge.layer_path import Hop, LayerPath, LayerPathError, decode_path
from evomerge.merge.mergekit_config import to_mergekit_config
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.merge.resident import ResidentMerger
from evomerge.models.checkpoint import open_checkpoint

from .conftest import LAYERS, differing, load_dir

TOKENS = torch.tensor([[2, 10, 11, 9, 5, 13, 4]])
HOPS = (Hop("base", 0, 1.0), Hop("expert1", 2, 0.7), Hop("base", 1, 1.4), Hop("base", 1, 0.8), Hop("expert1", 3, 1.25), Hop("base", 3, 1.1))


def test_decode_path_follows_the_indicator_and_pins_a_first_and_last():
    layers, repeats = [3, 2], 2  # M = 5 slots per repetition, T = 10
    indicator = [0, 1, 0, 0, 1, 0, 0, 1, 1, 1]
    scales = [1.5 + t / 10 for t in range(10)]
    path = decode_path(indicator, ["A", "B"], layers, repeats, scales)
    # slot 0 (A0) is always on; slot 7 = A2 of repetition 2 ends the path; slots 8, 9 (B) come after it
    assert [(h.model, h.layer) for h in path.hops] == [("A", 0), ("A", 1), ("B", 1), ("A", 2)]
    assert [h.scale for h in path.hops] == [1.5, 1.6, 1.9, 2.2]
    assert path.embed_model == "A"
    with pytest.raises(LayerPathError, match="indicator has 9 entries"):
        decode_path(indicator[:-1], ["A", "B"], layers, repeats)


def test_layer_path_round_trips_and_changes_the_recipe_digest(family32):
    plain = MergeRecipe("task_arithmetic", str(family32["base"]), (ExpertWeights("expert0", "u", {"weight": {"all": 1.0}}),))
    path = LayerPath(("merged", "expert1"), HOPS[:2], {"expert1": "file:///x"})
    with_path = MergeRecipe(plain.method, plain.base_uri, plain.experts, layer_path=path)
    assert "layerPath" not in plain.to_dict()
    assert MergeRecipe.from_dict(with_path.to_dict()) == with_path
    assert with_path.digest() != plain.digest()


def test_invalid_paths_are_refused():
    path = LayerPath(("A",), (Hop("A", 0, 1.0), Hop("A", 1, -0.5)))
    with pytest.raises(LayerPathError, match="hop 1: scale -0.5"):
        path.validate({"A": 2})
    with pytest.raises(LayerPathError, match="hop 1: layer 1 of 'A', which has 1 layers"):
        path.validate({"A": 1})
    gemma_like = ["model.layers.0.self_attn.o_proj.weight", "model.layers.0.mlp.down_proj.weight",
                  "model.layers.0.post_feedforward_layernorm.weight"]
    with pytest.raises(LayerPathError, match="normalises branch outputs"):
        check_foldable(gemma_like, "gemma2")


def _family_with_eps(family, tmp_path, eps: float):
    copied = {}
    for name in ("base", "expert0", "expert1", "expert2"):
        copied[name] = tmp_path / name
        shutil.copytree(family[name], copied[name])
        config = json.loads((copied[name] / "config.json").read_text())
        config["rms_norm_eps"] = eps
        (copied[name] / "config.json").write_text(json.dumps(config))
    return copied


def _path_recipe(family, models=("base", "expert1"), hops=HOPS, ps_experts=()) -> MergeRecipe:
    path = LayerPath(models, hops, {"expert1": str(family["expert1"])})
    experts = tuple(ExpertWeights(e, str(family[e]), {"weight": {"all": 0.7}, "density": {"all": 0.6}}) for e in ps_experts)
    return MergeRecipe("ties", str(family["base"]), experts, layer_path=path)


def _in_process(family, models=("base", "expert1"), hops=HOPS, recipe=None):
    model = AutoModelForCausalLM.from_pretrained(family["base"], dtype=torch.float32).eval()
    if recipe is not None:  # PS + DFS: model A is the resident merge
        experts = {e.name: open_checkpoint(family[e.name]) for e in recipe.experts}
        ResidentMerger(open_checkpoint(family["base"]), experts, LAYERS).merge_into(recipe, model.state_dict())
    other = AutoModelForCausalLM.from_pretrained(family["expert1"], dtype=torch.float32).eval()
    runner = PathModel(model, models[0], {"expert1": other})
    runner.set_path(LayerPath(models, hops))
    return model, runner


def _export(recipe, family, out):
    base = open_checkpoint(family["base"])
    inputs = {name: open_checkpoint(family[name]) for name in ("expert0", "expert1", "expert2")}
    export_merge(recipe, base, inputs, out)
    return AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()


def test_exported_path_equals_the_in_process_path_when_norms_are_scale_invariant(family32, tmp_path):
    family = _family_with_eps(family32, tmp_path / "fam", eps=0.0)
    model, _ = _in_process(family)
    exported = _export(_path_recipe(family), family, tmp_path / "out")
    assert exported.config.num_hidden_layers == len(HOPS)
    with torch.no_grad():
        torch.testing.assert_close(exported(TOKENS).logits, model(TOKENS).logits, rtol=1e-5, atol=1e-5)


def test_with_the_norms_epsilon_the_fold_is_close_not_exact(family32, tmp_path):
    model, _ = _in_process(family32)
    exported = _export(_path_recipe(family32), family32, tmp_path / "out")
    with torch.no_grad():
        ours, theirs = exported(TOKENS).logits, model(TOKENS).logits
    torch.testing.assert_close(ours, theirs, rtol=2e-2, atol=2e-2)
    assert ours.argmax(-1).tolist() == theirs.argmax(-1).tolist()


def test_each_hop_keeps_its_own_kv_cache_when_generating(family32, tmp_path):
    family = _family_with_eps(family32, tmp_path / "fam", eps=0.0)
    model, _ = _in_process(family)
    exported = _export(_path_recipe(family), family, tmp_path / "out")
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 1}
    assert model.generate(TOKENS, **kwargs).tolist() == exported.generate(TOKENS, **kwargs).tolist()
    uncached = model.generate(TOKENS, use_cache=False, **kwargs)
    assert model.generate(TOKENS, **kwargs).tolist() == uncached.tolist()


def test_path_model_resets_to_model_a(family32):
    model, runner = _in_process(family32)
    runner.reset()
    plain = AutoModelForCausalLM.from_pretrained(family32["base"], dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.equal(model(TOKENS).logits, plain(TOKENS).logits)
    assert model.config.num_hidden_layers == LAYERS


def test_hybrid_ps_merge_as_model_a(family32, tmp_path):
    family = _family_with_eps(family32, tmp_path / "fam", eps=0.0)
    hops = tuple(Hop("merged" if h.model == "base" else h.model, h.layer, h.scale) for h in HOPS)
    recipe = _path_recipe(family, ("merged", "expert1"), hops, ps_experts=("expert0", "expert2"))
    model, _ = _in_process(family, ("merged", "expert1"), hops, recipe)
    exported = _export(recipe, family, tmp_path / "out")
    with torch.no_grad():
        torch.testing.assert_close(exported(TOKENS).logits, model(TOKENS).logits, rtol=1e-5, atol=1e-5)
    pure = _export(_path_recipe(family), family, tmp_path / "pure")
    with torch.no_grad():
        assert not torch.allclose(pure(TOKENS).logits, exported(TOKENS).logits)


def test_exported_path_equals_mergekits_passthrough_with_scales(family32, run_mergekit, tmp_path):
    recipe = _path_recipe(family32)
    ours = tmp_path / "ours"
    _export(recipe, family32, ours)
    theirs = run_mergekit(to_mergekit_config(recipe, LAYERS), tmp_path / "mk")
    assert differing(load_dir(ours), theirs) == []


def test_a_path_over_the_recipes_own_merge_is_not_one_mergekit_config(family32):
    recipe = _path_recipe(family32, ("merged", "expert1"), (Hop("merged", 0), Hop("merged", 3)), ps_experts=("expert0",))
    with pytest.raises(LayerPathError, match="two mergekit runs"):
        to_mergekit_config(recipe, LAYERS)
