"""The SmolLM2 world's lm-eval tasks: disjoint splits, loadable by lm-eval, named after the world."""

from __future__ import annotations

import json

from evomerge.zoo.smollm2.recipe import RECIPE
from evomerge.zoo.smollm2.tasks import GENERAL, draw_evaluation_sets, write_world_tasks


def test_search_and_held_out_splits_are_disjoint_and_the_same_seed_draws_the_same_sets():
    sets = draw_evaluation_sets(RECIPE.everyone, 20, seed=3)
    for name in RECIPE.everyone:
        search = {ex.prompt for ex in sets.examples[(name, "search")]}
        heldout = {ex.prompt for ex in sets.examples[(name, "heldout")]}
        assert len(search) == len(heldout) == 20 and not search & heldout
    assert sets == draw_evaluation_sets(RECIPE.everyone, 20, seed=3)
    assert sets != draw_evaluation_sets(RECIPE.everyone, 20, seed=4)


def test_the_tasks_load_in_lm_eval_with_the_skills_group_and_the_general_check(tmp_path):
    from lm_eval.tasks import TaskManager

    sets = draw_evaluation_sets(RECIPE.everyone, 5, seed=0)
    search, heldout = write_world_tasks(sets, RECIPE.skills, tmp_path, tmp_path, seed=0)
    assert search["composite"] == "smollm2_skills_search" and heldout[GENERAL] == "smollm2_general_heldout"
    assert set(search) == set(RECIPE.everyone) | {"composite", GENERAL}
    manager = TaskManager(include_path=str(tmp_path), include_defaults=False)
    assert set(manager.load([search["iso_date"], heldout[GENERAL]])["tasks"]) == {search["iso_date"], heldout[GENERAL]}
    general = [json.loads(line) for line in (tmp_path / "general_search.jsonl").read_text().splitlines()]
    general_heldout = [json.loads(line) for line in (tmp_path / "general_heldout.jsonl").read_text().splitlines()]
    assert not {q["prompt"] for q in general} & {q["prompt"] for q in general_heldout}
    assert all(len(q["choices"]) == 4 and 0 <= q["label"] < 4 for q in general + general_heldout)
