"""The model card an exported merge carries: lineage with hashes, scores, search facts, a mergekit recipe that works."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from evomerge.report.model_card import lineage_for, weights_sha256, write_model_card
from evomerge.spec.merge_search import MergeSearchSpec
from tests.cli.test_run import evomerge
from tests.merge.test_mergekit_config import run_mergekit


def card_of(run_dir):
    return (run_dir / "merged" / "README.md").read_text()


def test_evomerge_run_writes_a_card_into_the_exported_checkpoint(finished_run):
    run_dir, summary = finished_run
    card = card_of(run_dir)
    assert card.startswith("---\n") and "# card-run" in card
    assert "A **ties** merge of 2 expert(s)" in card
    for name in ("e0", "e1"):
        assert f"| expert | {name} |" in card
    assert "| base | base |" in card
    best = summary["best"]
    assert f"| search | tiny_colors | acc ↑ | 8 | 1 | {round(best['scores']['tiny_colors/acc'], 4):g}" in card
    assert f"| held-out | tiny_colors | acc ↑ | all | 1 | {round(summary['heldOut']['tiny_colors/acc'], 4):g}" in card
    assert "- **optimizer**: random (generational)" in card and "- **seed**: 5" in card
    assert "population 2, 2 generations × 1 round(s)" in card
    assert f"- **best candidate**: {best['candidate']}" in card


def test_lineage_hashes_are_the_sha256_of_each_models_weights(finished_run, deep_family):
    card = card_of(finished_run[0])
    for key in ("base", "expert0", "expert1"):
        digest = hashlib.sha256((deep_family[key] / "model.safetensors").read_bytes()).hexdigest()
        assert f"`{digest}`" in card


def test_the_cards_mergekit_yaml_rebuilds_the_exported_weights(finished_run, tmp_path):
    merged = finished_run[0] / "merged"
    block = re.search(r"```yaml\n(.*?)```", card_of(finished_run[0]), re.S).group(1)
    assert block == (merged / "mergekit_config.yml").read_text()
    config = yaml.safe_load(block)
    assert config["merge_method"] == "ties" and len(config["slices"]) == 2
    ours = load_file(merged / "model.safetensors")
    theirs = run_mergekit(config, tmp_path / "mergekit")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_sharded_checkpoints_hash_their_sha256sum_listing(tmp_path):
    save_file({"a": torch.zeros(3)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"b": torch.ones(3)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    digest, per_file = weights_sha256(tmp_path)
    listing = "".join(f"{hashlib.sha256((tmp_path / n).read_bytes()).hexdigest()}  {n}\n" for n in sorted(per_file))
    assert digest == hashlib.sha256(listing.encode()).hexdigest()
    assert list(per_file) == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


def card_for_path(finished_run, tmp_path, layer_path: dict) -> tuple[str, object]:
    run_dir, summary = finished_run
    spec = MergeSearchSpec.model_validate(json.loads((run_dir / "spec.json").read_text()))
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "config.json").write_text((run_dir / "merged" / "config.json").read_text())
    recipe = dict(summary["best"]["recipe"], layerPath=layer_path)
    write_model_card(merged, spec, dict(summary, best=dict(summary["best"], recipe=recipe)), lineage_for(spec), name="dfs")
    return (merged / "README.md").read_text(), merged


def test_a_data_flow_merge_carries_its_passthrough_config(finished_run, tmp_path):
    card, merged = card_for_path(finished_run, tmp_path, {"models": ["e0"], "hops": [["e0", 0, 1.0], ["e0", 3, 1.2]], "sources": {}})
    assert "Data-flow path: 2 hops over e0." in card
    assert "A **data-flow** (layer path) merge of 1 model(s), 2 hops, found by evolutionary search" in card
    config = yaml.safe_load((merged / "mergekit_config.yml").read_text())
    assert config["merge_method"] == "passthrough" and len(config["slices"]) == 2


def test_a_path_over_its_own_merge_says_why_there_is_no_mergekit_config(finished_run, tmp_path):
    card, merged = card_for_path(finished_run, tmp_path, {"models": ["merged", "e0"], "hops": [["merged", 0, 1.0], ["e0", 3, 1.0]], "sources": {}})
    assert "Not expressible as a mergekit config" in card and "two mergekit runs" in card
    assert not (merged / "mergekit_config.yml").exists()


def test_a_summary_without_a_best_merge_has_no_card(finished_run, tmp_path):
    spec = MergeSearchSpec.model_validate(json.loads((finished_run[0] / "spec.json").read_text()))
    with pytest.raises(ValueError, match="no best recipe"):
        write_model_card(tmp_path, spec, {"best": None}, [])


def test_the_card_lists_each_experts_revision_hash_and_evolved_values(tmp_path, deep_family, tiny_tasks):
    revisions = {"e0": "3f9c2a17e0b4d85c6a1e2f3b4c5d6e7f80912345", "e1": "v1.2"}
    experts = [{"name": name, "uri": str(deep_family[f"expert{i}"]), "revision": revisions[name]} for i, name in enumerate(revisions)]
    spec = {
        "apiVersion": "evomerge.dev/v1alpha1", "kind": "MergeSearch", "metadata": {"name": "pinned"},
        "spec": {
            "baseModel": {"uri": str(deep_family["base"]), "revision": "main"},
            "experts": experts,
            "merge": {"method": "task_arithmetic", "granularity": "layerGroups", "layerGroups": 2},
            "search": {"algorithm": "random", "populationSize": 2, "maxGenerations": 1, "seed": 1},
            "objectives": [{"task": "tiny_colors", "metric": "acc", "limit": 4}],
            "evaluation": {"includePaths": [str(tiny_tasks)], "device": "cpu"},
        },
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = evomerge("run", str(tmp_path / "spec.yaml"), "--run-dir", str(tmp_path / "run"), "--json", "--no-compare")
    assert result.returncode == 0, result.stderr
    card = card_of(tmp_path / "run")

    def sha(key: str) -> str:
        return hashlib.sha256((deep_family[key] / "model.safetensors").read_bytes()).hexdigest()

    assert f"| base | base | `{deep_family['base']}` | main | `{sha('base')}` |" in card
    for i, (name, revision) in enumerate(revisions.items()):
        assert f"| expert | {name} | `{deep_family[f'expert{i}']}` | {revision} | `{sha(f'expert{i}')}` |" in card
    recipe = json.loads(result.stdout)["best"]["recipe"]
    assert recipe["groups"] == ["embed", "blocks0", "blocks1", "head"]
    rows = [line for line in card.splitlines() if re.match(r"\| e[01] \| weight \|", line)]
    assert rows == [
        f"| {e['name']} | weight | " + " | ".join(f"{round(e['params']['weight'][g], 4):g}" for g in recipe["groups"]) + " |"
        for e in recipe["experts"]
    ]


def test_the_cards_budget_counts_the_local_refinement_as_the_report_does():
    from evomerge.report.model_card import _search_facts
    from tests.report import runs

    spec = MergeSearchSpec.model_validate({**runs.spec(), "search": {**runs.spec()["search"], "refine": {"evaluations": 2}}})
    assert "; the last 2 for the local refinement" in _search_facts(spec, {})
    assert "local refinement" not in _search_facts(MergeSearchSpec.model_validate(runs.spec()), {})
