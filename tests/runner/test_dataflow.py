"""A data-flow (layer path) search from a spec, run locally: path candidates scored in process, the best exported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from evomerge.merge.export import export_merge
from evomerge.merge.inputs import open_recipe_inputs
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.models.checkpoint import CheckpointError, open_checkpoint
from evomerge.runner.local import make_engine, run_local
from evomerge.search.genome import genome_for
from evomerge.spec import MergeSearch
from tests.support.tiny_models import build_family

TOKENS = torch.tensor([[2, 10, 11, 9, 6, 13, 4, 12]])


@pytest.fixture(scope="module")
def exact_family(tmp_path_factory) -> dict[str, Path]:
    """Two experts whose norms have ε = 0: folding hop scales into weights is then exact, not approximate."""
    family = build_family(tmp_path_factory.mktemp("dfs-family"), n_experts=2, layers=2, noise=0.3)
    for path in family.values():
        config = json.loads((path / "config.json").read_text())
        config["rms_norm_eps"] = 0.0
        (path / "config.json").write_text(json.dumps(config))
    return family


def dfs_search(family, tasks, experts=("expert0", "expert1"), **data_flow) -> MergeSearch:
    return MergeSearch.model_validate({
        "metadata": {"name": "dfs"},
        "spec": {
            "experts": [{"name": f"e{i}", "uri": str(family[name])} for i, name in enumerate(experts)],
            "merge": {"dataFlow": {"enabled": True, "repeats": 2, "scaleBounds": ["0.6", "1.6"], **data_flow}},
            "search": {"algorithm": "random", "populationSize": 3, "maxGenerations": 2, "seed": 3},
            "objectives": [{"task": "tiny_colors"}],
            "heldOut": [{"task": "tiny_colors"}],
            "evaluation": {"includePaths": [str(tasks)], "device": "cpu"},
        },
    })


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(TOKENS).logits


@pytest.fixture(scope="module")
def dfs_run(exact_family, tiny_tasks, tmp_path_factory):
    search = dfs_search(exact_family, tiny_tasks)
    return search, run_local(search, tmp_path_factory.mktemp("dfs-run") / "run")


def test_the_search_evolves_layer_paths_and_exports_the_best_one(dfs_run):
    search, run = dfs_run
    assert run.outcome.evaluations == 6 and run.outcome.failed == 0
    best = MergeRecipe.from_dict(run.outcome.best.recipe)
    path = best.layer_path
    assert path is not None and path.models == ("e0", "e1")
    assert (path.hops[0].model, path.hops[0].layer) == ("e0", 0) and (path.hops[-1].model, path.hops[-1].layer) == ("e0", 1)
    assert any(h.scale != 1.0 for h in path.hops) and all(0.6 <= h.scale <= 1.6 for h in path.hops)
    genome = genome_for(search.spec, 2, {"e0": 2, "e1": 2})
    history = [json.loads(line) for line in (run.run_dir / "history.jsonl").read_text().splitlines()]
    asked = [v for event in history if event["type"] == "ask" for v in event["vectors"]]
    assert len(asked) == 6 and len({genome.decode(v).layer_path.hops for v in asked}) > 1
    assert set(run.held_out) == {"tiny_colors/acc"}
    exported = AutoModelForCausalLM.from_pretrained(run.merged_dir, dtype=torch.float32).eval()
    assert exported.config.num_hidden_layers == len(path.hops)
    engine = make_engine(search.spec, search.spec.objectives)  # no cache: the path really runs again
    assert engine.score(best) == run.outcome.best.scores
    torch.testing.assert_close(logits(exported), logits(engine.model), rtol=1e-5, atol=1e-5)


def test_the_in_process_path_is_not_the_plain_model_a(dfs_run, exact_family):
    search, run = dfs_run
    engine = make_engine(search.spec, search.spec.objectives)
    engine.score(MergeRecipe.from_dict(run.outcome.best.recipe))
    model_a = AutoModelForCausalLM.from_pretrained(exact_family["expert0"], dtype=torch.float32).eval()
    assert not torch.allclose(logits(engine.model), logits(model_a), atol=1e-3)


def test_the_exported_summary_rebuilds_from_the_recipe_alone(dfs_run, tmp_path):
    _, run = dfs_run
    recipe = MergeRecipe.from_dict(json.loads((run.run_dir / "summary.json").read_text())["best"]["recipe"])
    base, inputs = open_recipe_inputs(recipe)
    again = export_merge(recipe, base, inputs, tmp_path / "again")
    ours, theirs = load_file(run.merged_dir / "model.safetensors"), load_file(again / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_model_a_can_be_an_exported_merge(exact_family, tiny_tasks, tmp_path):
    """PS + DFS: a parameter-space merge, exported, is model A of a path over it and an expert."""
    experts = {name: open_checkpoint(exact_family[name]) for name in ("expert0", "expert1")}
    merge = MergeRecipe("linear", None, tuple(ExpertWeights(n, str(exact_family[n]), {"weight": {"all": 0.5}}) for n in experts))
    merged = export_merge(merge, None, experts, tmp_path / "ps-merge")
    search = dfs_search(exact_family, tiny_tasks, experts=("expert1",), modelA={"uri": f"file://{merged}"}, evolveScales=False)
    run = run_local(search, tmp_path / "run")
    best = MergeRecipe.from_dict(run.outcome.best.recipe)
    assert best.layer_path.models == ("modelA", "e0") and best.layer_path.sources == {"modelA": f"file://{merged}"}
    assert all(h.scale == 1.0 for h in best.layer_path.hops)
    assert f"| modelA | `file://{merged}` |" in (run.merged_dir / "README.md").read_text()  # the card's lineage
    exported = AutoModelForCausalLM.from_pretrained(run.merged_dir, dtype=torch.float32).eval()
    engine = make_engine(search.spec, search.spec.objectives)
    engine.score(best)
    torch.testing.assert_close(logits(exported), logits(engine.model), rtol=1e-5, atol=1e-5)


def test_path_models_of_another_width_are_refused_by_field(exact_family, tiny_tasks, tmp_path):
    wide = build_family(tmp_path / "wide", n_experts=0, hidden=64)["base"]
    shutil.copytree(exact_family["expert0"], tmp_path / "narrow")
    search = dfs_search({"expert0": tmp_path / "narrow", "expert1": wide}, tiny_tasks)
    with pytest.raises(CheckpointError, match=r"spec.merge.dataFlow: path model 'e1' has hidden_size 64, model A"):
        run_local(search, tmp_path / "run", export=False)


def test_engines_refuse_candidates_of_the_other_kind(dfs_run, exact_family, tiny_tasks):
    search, run = dfs_run
    path_engine = make_engine(search.spec, search.spec.objectives)
    plain = MergeRecipe("linear", None, (ExpertWeights("e0", str(exact_family["expert0"]), {"weight": {"all": 1.0}}),))
    with pytest.raises(ValueError, match="recipe has no layerPath, but this engine runs a data-flow search's layer paths"):
        path_engine.score(plain)
    ps = search.spec.model_copy(update={"merge": search.spec.merge.model_copy(
        update={"method": "linear", "data_flow": search.spec.merge.data_flow.model_copy(update={"enabled": False})})})
    with pytest.raises(ValueError, match="recipe has a layerPath, but this engine merges parameters only"):
        make_engine(ps, ps.objectives).score(MergeRecipe.from_dict(run.outcome.best.recipe))
