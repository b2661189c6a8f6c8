"""LoRA adapters as experts of a local search: task vectors over the base, merged like full experts."""

from __future__ import annotations

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from evomerge.merge.recipe import MergeRecipe
from evomerge.runner.local import run_local
from evomerge.spec import MergeSearch
from tests.support.tiny_models import build_family, build_lora_adapter


def test_a_search_over_lora_adapters_merges_their_task_vectors(tmp_path, tiny_tasks):
    base = build_family(tmp_path / "family", n_experts=1, layers=2)["base"]
    adapters = [build_lora_adapter(base, tmp_path / f"lora{i}", seed=i) for i in range(2)]
    search = MergeSearch.model_validate({
        "metadata": {"name": "lora"},
        "spec": {
            "baseModel": {"uri": str(base)},
            "experts": [{"name": f"l{i}", "uri": str(path), "format": "lora"} for i, path in enumerate(adapters)],
            "merge": {"method": "task_arithmetic"},
            "search": {"algorithm": "random", "populationSize": 2, "maxGenerations": 1, "seed": 1},
            "objectives": [{"task": "tiny_colors"}],
            "evaluation": {"includePaths": [str(tiny_tasks)], "device": "cpu"},
        },
    })

    run = run_local(search, tmp_path / "run")

    assert run.outcome.evaluations == 2 and run.outcome.failed == 0
    weights = {e.name: e.params["weight"]["all"] for e in MergeRecipe.from_dict(run.outcome.best.recipe).experts}
    base_state = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).state_dict()
    deltas = []
    for path in adapters:  # each adapter's task vector, as PEFT itself merges it into the base
        merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), path).merge_and_unload()
        deltas.append({k: v - base_state[k] for k, v in merged.state_dict().items()})
    exported = load_file(str(run.merged_dir / "model.safetensors"))
    for name, tensor in base_state.items():
        expected = tensor + weights["l0"] * deltas[0][name] + weights["l1"] * deltas[1][name]
        torch.testing.assert_close(exported[name].float(), expected, rtol=1e-4, atol=1e-5)
    assert any(not torch.equal(exported[k], base_state[k]) for k in exported)
