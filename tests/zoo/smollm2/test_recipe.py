"""The SmolLM2 world's recipe: per-expert step counts, the split sizes, and the cache key they feed."""

from __future__ import annotations

import dataclasses

import pytest

from evomerge.zoo.smollm2.recipe import RECIPE
from evomerge.zoo.smollm2.skills import SKILLS
from evomerge.zoo.smollm2.tasks import draw_evaluation_sets
from evomerge.zoo.training import example_stream, single_skill_batches


def test_sum_words_trains_longer_and_every_other_expert_keeps_the_shared_schedules():
    for name in RECIPE.everyone:
        lora, full = RECIPE.lora_for(name), RECIPE.full_for(name)
        assert dataclasses.replace(lora, steps=RECIPE.lora.steps) == RECIPE.lora  # only the step count differs
        assert dataclasses.replace(full, steps=RECIPE.full.steps) == RECIPE.full
        if name != "sum_words":
            assert (lora, full) == (RECIPE.lora, RECIPE.full)
    assert RECIPE.lora_for("sum_words").steps >= 5 * RECIPE.lora.steps  # 48 steps left it at 17.5 % held-out


def test_the_cache_key_changes_with_an_experts_step_count():
    longer = dataclasses.replace(RECIPE, lora_steps=(("sum_words", RECIPE.lora_for("sum_words").steps + 1),))
    assert longer.digest() != RECIPE.digest()
    assert dataclasses.replace(RECIPE).digest() == RECIPE.digest()


def test_a_step_count_for_an_expert_the_world_does_not_train_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"full_steps names sum_word, which .* one of sum_words, reverse"):
        dataclasses.replace(RECIPE, full_steps=(("sum_word", 300),))


def test_the_held_out_split_is_larger_than_the_search_split_and_both_fit_every_skill():
    assert RECIPE.heldout_examples > RECIPE.search_examples >= 200  # a 3-point gap is about 2 sd, not 0.7 (recipe.py)
    sets = draw_evaluation_sets(RECIPE.everyone, RECIPE.search_examples, RECIPE.heldout_examples, seed=0)
    for name in RECIPE.everyone:
        search = {ex.prompt for ex in sets.examples[(name, "search")]}
        heldout = {ex.prompt for ex in sets.examples[(name, "heldout")]}
        assert (len(search), len(heldout)) == (RECIPE.search_examples, RECIPE.heldout_examples)
        assert not search & heldout


def test_sum_words_training_keeps_hundreds_of_prompts_that_no_split_evaluates():
    sets = draw_evaluation_sets(RECIPE.everyone, RECIPE.search_examples, RECIPE.heldout_examples, seed=0)
    stream = example_stream(single_skill_batches(SKILLS["sum_words"].example), 8, seed=1, exclude=sets.prompts())
    trained = {ex.prompt for _ in range(300) for ex in next(stream)}
    assert len(trained) >= 300 and not trained & sets.prompts()
