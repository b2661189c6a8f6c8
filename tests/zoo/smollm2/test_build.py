"""The built SmolLM2 world (opt-in: ``pytest -m smollm2``): what it holds, and that its experts learned their skills
without the base forgetting its general knowledge."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.zoo.smollm2.recipe import RECIPE
from evomerge.zoo.smollm2.tasks import GENERAL

HELD_OUT_ITEMS = 100  # per split: the held_out fixture's subsample

pytestmark = pytest.mark.smollm2


def test_the_world_holds_the_base_lora_and_few_layer_experts_and_its_tasks(smollm2_world):
    zoo = smollm2_world
    assert set(zoo.lora_adapters) == set(zoo.experts) == set(RECIPE.everyone)
    assert zoo.checks == (GENERAL,) and zoo.metric_of(GENERAL) == "acc" and zoo.metric_of("reverse") == "exact_match"
    base = load_file(str(zoo.base / "model.safetensors"))
    trained = tuple(f"model.layers.{i}." for i in RECIPE.full_layers)
    for name, path in zoo.experts.items():
        expert = load_file(str(path / "model.safetensors"))
        assert expert.keys() == base.keys()
        changed = {k for k in base if not torch.equal(base[k], expert[k])}
        assert changed and all(k.startswith(trained) for k in changed), name  # only its few layers moved
    for name, path in zoo.lora_adapters.items():
        config = json.loads((path / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == str(zoo.base)
        layers = {int(k.split(".layers.")[1].split(".")[0]) for k in load_file(str(path / "adapter_model.safetensors"))}
        assert layers == set(RECIPE.lora_layers), name


def _alone(zoo, name: str | None) -> MergeRecipe:
    """The base with one LoRA expert's task vector at weight 1 (``None``: the base itself)."""
    experts = tuple(ExpertWeights(n, str(p), {"weight": {"all": float(n == name)}})
                    for n, p in sorted(zoo.lora_adapters.items()))
    return MergeRecipe("task_arithmetic", str(zoo.base), experts, ("all",), {"normalize": False})


@pytest.fixture(scope="module")
def held_out(smollm2_world):
    """(score of a recipe on the held-out splits by world key — skills, distractors, the general check —, the base's
    scores), on a seeded subsample of each split: whether an expert learned its skill shows on 100 items (the 0.3 margin
    is over 4 sampling sd), and scoring all 1,660 in-process per model would take the opt-in run most of an hour; the
    landscape (benchmarks/smollm2_landscape.py) scores the full splits."""
    from evomerge.cli.demo import demo_search
    from evomerge.runner.local import make_engine
    from evomerge.spec import Objective

    spec = demo_search(smollm2_world, "evogm", 0, 1, 2, world="smollm2").spec
    keys = smollm2_world.skills + smollm2_world.distractors + smollm2_world.checks
    objectives = [Objective.model_validate({**smollm2_world.objective(k, "heldout"), "limit": HELD_OUT_ITEMS})
                  for k in keys]
    engine = make_engine(spec, objectives)

    def score(recipe: MergeRecipe) -> dict[str, float]:
        raw = engine.score(recipe)
        return {k: raw[o.key] for k, o in zip(keys, objectives)}

    return score, score(_alone(smollm2_world, None))


def test_the_base_passes_the_general_check(held_out):
    _, base = held_out
    assert base[GENERAL] >= 0.8  # SmolLM2 knows its capitals


@pytest.mark.parametrize("skill", RECIPE.everyone)  # the distractor's expert too: its task is scored, never searched
def test_each_lora_expert_learned_its_skill(smollm2_world, held_out, skill):
    score, base = held_out
    expert = score(_alone(smollm2_world, skill))
    assert expert[skill] >= base[skill] + 0.3, (skill, base, expert)  # the base half knows some (iso_date: 40 %)
