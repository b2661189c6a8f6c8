"""The zoo's evaluation sets and their lm-evaluation-harness task configs.

Each task is a ``generate_until`` task over a local JSONL file (greedy, stops at a newline, scored by
``exact_match``), so it runs through lm-eval like any other task: ``TaskManager(include_path=...)``.
Every skill has a search split and a disjoint held-out split; ``zoo_skills_<split>`` is a group
averaging the objective skills, and ``zoo_pairs_<split>`` holds prompts that need two skills at once.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from .skills import ANSWER_END, SKILLS, Example, draw_example

SPLITS = ("search", "heldout")
METRIC = "exact_match"
COMPOSITE = "composite"  # key of the group task in Zoo.search_tasks / Zoo.heldout_tasks
PAIRS = "pairs"  # key of the two-skill task


def task_name(key: str, split: str, world: str = "zoo") -> str:
    group = {COMPOSITE: "skills"}.get(key, key)
    return f"{world}_{group}_{split}"


@dataclass(frozen=True)
class EvaluationSets:
    """Per task key (a skill name, or ``pairs``) and split, the examples to score."""

    examples: dict[tuple[str, str], list[Example]]

    def prompts(self) -> frozenset[str]:
        """Every prompt in any split: training never shows these."""
        return frozenset(ex.prompt for exs in self.examples.values() for ex in exs)


def _draw_unique(draw, rng: random.Random, count: int) -> list[Example]:
    seen: set[str] = set()
    out: list[Example] = []
    while len(out) < count:
        ex = draw(rng)
        if ex.prompt not in seen:
            seen.add(ex.prompt)
            out.append(ex)
    return out


def draw_evaluation_sets(skills: tuple[str, ...], distractors: tuple[str, ...], per_split: int,
                         seed: int) -> EvaluationSets:
    """Disjoint search / held-out examples for every skill, distractor and the skill pairs."""
    rng = random.Random(f"zoo-eval-{seed}")
    examples: dict[tuple[str, str], list[Example]] = {}
    for name in skills + distractors:
        drawn = _draw_unique(lambda r, s=SKILLS[name]: draw_example((s,), r), rng, 2 * per_split)
        examples[(name, "search")], examples[(name, "heldout")] = drawn[:per_split], drawn[per_split:]
    orders = [(a, b) for a in skills for b in skills if a != b]

    def draw_pair(r: random.Random) -> Example:
        a, b = r.choice(orders)
        return draw_example((SKILLS[a], SKILLS[b]), r)

    drawn = _draw_unique(draw_pair, rng, 2 * per_split)
    examples[(PAIRS, "search")], examples[(PAIRS, "heldout")] = drawn[:per_split], drawn[per_split:]
    return EvaluationSets(examples)


def local_task_header(name: str, data_file: Path) -> list[str]:
    """The YAML lines that make an lm-eval task of a local JSONL file."""
    return [
        f"task: {name}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {json.dumps(str(data_file))}",
        "test_split: test",
    ]


def _task_yaml(name: str, data_file: Path, max_gen_toks: int) -> str:
    q = json.dumps  # a JSON string is a valid YAML scalar, and keeps "\n" readable
    return "\n".join([
        *local_task_header(name, data_file),
        "output_type: generate_until",
        f"doc_to_text: {q('{{prompt}}')}",
        f"doc_to_target: {q('{{answer}}')}",
        f"target_delimiter: {q('')}",
        "generation_kwargs:",
        f"  until: [{q(ANSWER_END)}]",
        f"  max_gen_toks: {max_gen_toks}",
        "  do_sample: false",
        "metric_list:",
        f"  - metric: {METRIC}",
        "    aggregation: mean",
        "    higher_is_better: true",
        "metadata:",
        "  version: 1.0",
        "",
    ])


def _group_yaml(name: str, members: list[str]) -> str:
    return "\n".join([
        f"group: {name}",
        "task:",
        *(f"  - {m}" for m in members),
        "aggregate_metric_list:",
        f"  - metric: {METRIC}",
        "    aggregation: mean",
        "    weight_by_size: false",
        "metadata:",
        "  version: 1.0",
        "",
    ])


def write_tasks(sets: EvaluationSets, skills: tuple[str, ...], tasks_dir: Path,
                data_dir_final: Path, world: str = "zoo") -> tuple[dict[str, str], dict[str, str]]:
    """Write JSONL files and task YAMLs; returns (search tasks, held-out tasks) by key.

    ``tasks_dir`` is where files are written now; ``data_dir_final`` is where the JSONL files will
    sit once the build is renamed into place (the YAMLs must point there). Task names start with ``world``.
    """
    tasks_dir.mkdir(parents=True, exist_ok=True)
    names: dict[str, dict[str, str]] = {split: {} for split in SPLITS}
    for (key, split), exs in sets.examples.items():
        jsonl = tasks_dir / f"{key}_{split}.jsonl"
        with jsonl.open("w") as f:
            for ex in exs:
                f.write(json.dumps({"prompt": ex.prompt, "answer": ex.answer}) + "\n")
        name = task_name(key, split, world)
        max_gen_toks = max(len(ex.answer) for ex in exs) + 2
        (tasks_dir / f"{name}.yaml").write_text(_task_yaml(name, data_dir_final / jsonl.name, max_gen_toks))
        names[split][key] = name
    for split in SPLITS:
        name = task_name(COMPOSITE, split, world)
        (tasks_dir / f"{name}.yaml").write_text(_group_yaml(name, [names[split][s] for s in skills]))
        names[split][COMPOSITE] = name
    return names["search"], names["heldout"]
