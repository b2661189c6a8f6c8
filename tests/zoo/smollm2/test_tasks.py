"""The SmolLM2 world's lm-eval tasks: disjoint splits, loadable by lm-eval, named after the world."""

from __future__ import annotations

import json

import pytest

from evomerge.zoo.smollm2.recipe import RECIPE
from evomerge.zoo.smollm2.skills import SKILLS
from evomerge.zoo.smollm2.tasks import GENERAL, draw_evaluation_sets, write_world_tasks


def test_search_and_held_out_splits_are_disjoint_and_the_same_seed_draws_the_same_sets():
    sets = draw_evaluation_sets(RECIPE.everyone, 20, 30, seed=3)
    for name in RECIPE.everyone:
        search = {ex.prompt for ex in sets.examples[(name, "search")]}
        heldout = {ex.prompt for ex in sets.examples[(name, "heldout")]}
        assert (len(search), len(heldout)) == (20, 30) and not search & heldout
    assert sets == draw_evaluation_sets(RECIPE.everyone, 20, 30, seed=3)
    assert sets != draw_evaluation_sets(RECIPE.everyone, 20, 30, seed=4)


def test_splits_a_skill_has_too_few_prompts_for_are_refused_naming_the_recipe_fields():
    with pytest.raises(ValueError, match="'sum_words' drew only 961 distinct prompts .* heldout_examples"):
        draw_evaluation_sets(("sum_words",), 500, 500, seed=0)  # 31 × 31 sums


def test_the_tasks_load_in_lm_eval_with_the_skills_group_and_the_general_check(tmp_path):
    from lm_eval.tasks import TaskManager

    sets = draw_evaluation_sets(RECIPE.everyone, 5, 5, seed=0)
    search, heldout = write_world_tasks(sets, RECIPE.skills, tmp_path, tmp_path, seed=0)
    assert search["composite"] == "smollm2_skills_search" and heldout[GENERAL] == "smollm2_general_heldout"
    assert set(search) == set(RECIPE.everyone) | {"composite", GENERAL}
    manager = TaskManager(include_path=str(tmp_path), include_defaults=False)
    assert set(manager.load([search["iso_date"], heldout[GENERAL]])["tasks"]) == {search["iso_date"], heldout[GENERAL]}
    general = [json.loads(line) for line in (tmp_path / "general_search.jsonl").read_text().splitlines()]
    general_heldout = [json.loads(line) for line in (tmp_path / "general_heldout.jsonl").read_text().splitlines()]
    assert not {q["prompt"] for q in general} & {q["prompt"] for q in general_heldout}
    assert all(len(q["choices"]) == 4 and 0 <= q["label"] < 4 for q in general + general_heldout)


def test_the_distractor_has_tasks_on_both_splits_outside_the_skills_group(tmp_path):
    """The landscape scores how well the distractor's expert learned its skill and what a merge keeps of it; no
    objective asks for it, so the skills' group (the composite score) leaves it out."""
    from lm_eval.tasks import TaskManager

    sets = draw_evaluation_sets(RECIPE.everyone, 5, 7, seed=0)
    search, heldout = write_world_tasks(sets, RECIPE.skills, tmp_path, tmp_path, seed=0)
    for split, tasks in (("search", search), ("heldout", heldout)):
        for name in RECIPE.distractors:
            assert tasks[name] == f"smollm2_{name}_{split}"
            assert name not in (tmp_path / f"{tasks['composite']}.yaml").read_text()
            rows = [json.loads(line) for line in (tmp_path / f"{name}_{split}.jsonl").read_text().splitlines()]
            assert len(rows) == {"search": 5, "heldout": 7}[split]
            skill = SKILLS[name]
            assert all(row["answer"] == " " + skill.solve(row["prompt"].removeprefix(f"{skill.instruction}: ")
                                                          .removesuffix(" =")) for row in rows)
    manager = TaskManager(include_path=str(tmp_path), include_defaults=False)
    names = [search[d] for d in RECIPE.distractors] + [heldout[d] for d in RECIPE.distractors]
    assert set(manager.load(names)["tasks"]) == set(names)
