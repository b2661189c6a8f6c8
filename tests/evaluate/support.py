"""Helpers for engine tests: a local task of every lm-eval request type, recipes, fast engine options."""

from __future__ import annotations

import json
from pathlib import Path

from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.spec.merge_search import Objective
from tests.support.tiny_models import write_choice_task

DATA = {
    "tiny_gen": [{"question": q, "answer": a} for q, a in
                 [("the sky is", "blue"), ("the grass is", "green"), ("is the sky blue ?", "yes"), ("a b", "a")]],
    "tiny_next": [{"question": q, "answer": a} for q, a in
                  [("the sky is", "blue"), ("the grass is", "green"), ("the sky", "is"), ("is the", "sky"),
                   ("a b", "a"), ("yes no", "yes")]],
    "tiny_text": [{"text": t} for t in
                  ["the sky is blue", "the grass is green", "is the sky blue ? yes", "a b a b a b", "red green blue"]],
}

YAML = {
    "tiny_gen": (
        "output_type: generate_until\n"
        "doc_to_text: '{{question}}'\n"
        "doc_to_target: '{{answer}}'\n"
        "generation_kwargs:\n  until: ['?']\n  max_gen_toks: 3\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
    ),
    "tiny_next": (
        "output_type: loglikelihood\n"
        "doc_to_text: '{{question}}'\n"
        "doc_to_target: ' {{answer}}'\n"
        "metric_list:\n  - metric: perplexity\n    aggregation: perplexity\n    higher_is_better: false\n"
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    ),
    "tiny_text": (
        "output_type: loglikelihood_rolling\n"
        "doc_to_text: ''\n"
        "doc_to_target: '{{text}}'\n"
        "metric_list:\n  - metric: word_perplexity\n  - metric: byte_perplexity\n  - metric: bits_per_byte\n"
    ),
}

# One objective per request type: multiple choice, generate_until, loglikelihood (reads is_greedy), rolling.
ALL_TYPES = [
    Objective(task="tiny_colors", metric="acc"),
    Objective(task="tiny_gen", metric="exact_match"),
    Objective(task="tiny_next", metric="acc"),
    Objective(task="tiny_next", metric="perplexity", direction="minimize"),
    Objective(task="tiny_text", metric="word_perplexity", direction="minimize"),
]


def write_task(root: Path, name: str) -> None:
    data = root / f"{name}.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in DATA[name]))
    (root / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
        + YAML[name]
    )


def write_all_task_types(root: Path) -> Path:
    """tiny_colors (multiple choice), tiny_gen, tiny_next and tiny_text in one include path."""
    write_choice_task(root)
    for name in DATA:
        write_task(root, name)
    return root


def linear_recipe(family: dict[str, Path], w0: float, w1: float) -> MergeRecipe:
    return MergeRecipe(
        method="linear", base_uri=None,
        experts=(ExpertWeights("expert0", str(family["expert0"]), {"weight": {"all": w0}}),
                 ExpertWeights("expert1", str(family["expert1"]), {"weight": {"all": w1}})),
        options={"normalize": False},
    )


# Engine options that keep readiness polls and retry backoff short in tests.
FAST = {"ready_interval_s": 0.01, "retry_backoff_s": 0.01}
