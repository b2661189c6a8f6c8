"""The SmolLM2 world's lm-eval tasks: each skill's search and held-out splits, and the general check."""

from __future__ import annotations

import json
import random
from pathlib import Path

from ..tasks import EvaluationSets, local_task_header, write_tasks
from .recipe import WORLD
from .skills import SKILLS, capital_questions

GENERAL = "general"  # key of the general-ability check in Zoo.search_tasks / Zoo.heldout_tasks
GENERAL_METRIC = "acc"
# Draws per wanted prompt before a skill counts as too small for its splits (sum_words' 961 prompts give 600 distinct
# in about 940 draws): a payload space smaller than the splits is refused instead of looping for ever.
DRAWS_PER_PROMPT = 20


def draw_evaluation_sets(names: tuple[str, ...], search: int, heldout: int, seed: int) -> EvaluationSets:
    """Disjoint search / held-out examples for every skill and distractor (no prompt twice): ``search`` and
    ``heldout`` prompts of each."""
    rng = random.Random(f"{WORLD}-eval-{seed}")
    examples = {}
    for name in names:
        seen: dict[str, object] = {}
        draws = 0
        while len(seen) < search + heldout:
            ex = SKILLS[name].example(rng)
            seen.setdefault(ex.prompt, ex)
            draws += 1
            if draws > DRAWS_PER_PROMPT * (search + heldout):
                raise ValueError(f"skill {name!r} drew only {len(seen)} distinct prompts for {search} search and "
                                 f"{heldout} held-out ones: lower the recipe's search_examples / heldout_examples "
                                 "or widen the skill's payloads")
        drawn = list(seen.values())
        examples[(name, "search")], examples[(name, "heldout")] = drawn[:search], drawn[search:]
    return EvaluationSets(examples)


def _choice_task_yaml(name: str, data_file: Path) -> str:
    q = json.dumps
    return "\n".join([
        *local_task_header(name, data_file),
        "output_type: multiple_choice",
        f"doc_to_text: {q('{{prompt}}')}",
        f"doc_to_choice: {q('{{choices}}')}",
        "doc_to_target: label",
        "metric_list:",
        f"  - metric: {GENERAL_METRIC}",
        "    aggregation: mean",
        "    higher_is_better: true",
        "metadata:",
        "  version: 1.0",
        "",
    ])


def write_general_tasks(tasks_dir: Path, data_dir_final: Path, seed: int) -> tuple[str, str]:
    """The capitals check, split in two halves; returns the (search, held-out) task names."""
    questions = capital_questions(random.Random(f"{WORLD}-general-{seed}"))
    half = len(questions) // 2
    names = []
    for split, part in (("search", questions[:half]), ("heldout", questions[half:])):
        jsonl = tasks_dir / f"{GENERAL}_{split}.jsonl"
        jsonl.write_text("".join(json.dumps({"prompt": q.prompt, "choices": list(q.choices), "label": q.label}) + "\n"
                                 for q in part))
        name = f"{WORLD}_{GENERAL}_{split}"
        (tasks_dir / f"{name}.yaml").write_text(_choice_task_yaml(name, data_dir_final / jsonl.name))
        names.append(name)
    return names[0], names[1]


def write_world_tasks(sets: EvaluationSets, skills: tuple[str, ...], tasks_dir: Path, data_dir_final: Path,
                      seed: int) -> tuple[dict[str, str], dict[str, str]]:
    """Every task of the world; returns (search tasks, held-out tasks) by key, the general check's included."""
    search, heldout = write_tasks(sets, skills, tasks_dir, data_dir_final, world=WORLD)
    search[GENERAL], heldout[GENERAL] = write_general_tasks(tasks_dir, data_dir_final, seed)
    return search, heldout
