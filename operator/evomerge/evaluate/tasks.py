"""lm-evaluation-harness tasks, built once per search and reused for every candidate.

A `TaskSuite` loads the objectives' tasks (datasets included) once, draws each task's subsample once
from the search seed, and then scores any lm-eval model on exactly those items: every candidate of a
search, in any process, sees the same documents.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from typing import Any, Sequence

from ..spec.merge_search import Objective
from .items import ItemScores, ObjectiveItems
from .quiet import hidden_task_progress
from .template_cache import compiled_templates

# Only these output types read `is_greedy` (lm-eval's `acc` for lambada-style tasks); engines that pay
# an extra request for it (TGI) skip it everywhere else.
GREEDY_OUTPUT_TYPES = ("loglikelihood",)


class TaskError(ValueError):
    """A task or metric lm-eval does not know."""


@dataclass(frozen=True)
class TaskSuite:
    """The objectives' tasks, loaded once, and the fixed subsample of each."""

    objectives: tuple[Objective, ...]
    task_dict: dict[str, Any]
    samples: dict[str, list[int]]
    greedy_tasks: frozenset[str]

    @classmethod
    def build(cls, objectives: Sequence[Objective], include_paths: Sequence[str] = (), seed: int = 0) -> "TaskSuite":
        names = sorted({o.task for o in objectives})
        task_dict = _load(_task_manager(names, include_paths), names)
        leaves: dict[str, Any] = task_dict["tasks"]
        limits = _limits_per_leaf(objectives, task_dict)
        samples = {}
        for leaf, limit in sorted(limits.items()):
            indices = draw_indices(len(leaves[leaf].eval_docs), limit, seed, leaf)
            if indices is not None:
                samples[leaf] = indices
        greedy = frozenset(n for n, t in leaves.items() if t.OUTPUT_TYPE in GREEDY_OUTPUT_TYPES)
        return cls(tuple(objectives), task_dict, samples, greedy)

    def run(self, lm: Any) -> dict[str, float]:
        """Score `lm` on every objective; the documents are the same on every call."""
        results = self._evaluate(lm, log_samples=False)
        return {o.key: read_metric(results, o) for o in self.objectives}

    def run_items(self, lm: Any) -> tuple[dict[str, float], ItemScores]:
        """Score `lm` as `run` does, and keep each objective's per-item values from lm-eval's logged samples."""
        results = self._evaluate(lm, log_samples=True)
        return {o.key: read_metric(results, o) for o in self.objectives}, {o.key: self._items(results, o) for o in self.objectives}

    def _evaluate(self, lm: Any, log_samples: bool) -> dict[str, Any]:
        from lm_eval.evaluator import evaluate

        with hidden_task_progress(), compiled_templates():
            return evaluate(lm=lm, task_dict=self.task_dict, samples=self.samples or None, bootstrap_iters=0,
                            log_samples=log_samples)

    def _items(self, results: dict[str, Any], objective: Objective) -> ObjectiveItems:
        """The objective's per-document values as lm-eval logged them, over its leaf tasks (a group's pooled).

        A logged sample holds every metric of one document under one filter, so the filter of the metric
        key lm-eval reported the objective under picks the samples."""
        metric, _, filter_key = metric_key(results, objective).partition(",")
        values: dict[str, Any] = {}
        aggregations = set()
        for leaf in _leaves(objective.task, self.task_dict):
            aggregations.add(_aggregation_name(self.task_dict["tasks"][leaf].aggregation().get(metric)))
            for sample in results.get("samples", {}).get(leaf, []):
                if sample.get("filter") == filter_key and metric in sample:
                    value = sample[metric]
                    values[f"{leaf}:{sample['doc_id']}"] = list(value) if isinstance(value, tuple) else value
        if len(aggregations) != 1 or None in aggregations:
            raise TaskError(f"objective {objective.key}: its tasks aggregate {metric} differently ({sorted(map(str, aggregations))}), "
                            "so their items cannot be pooled into one paired test")
        return ObjectiveItems(aggregations.pop(), values)

    @property
    def documents(self) -> dict[str, int]:
        """Documents scored per leaf task (after subsampling)."""
        leaves = self.task_dict["tasks"]
        return {n: len(self.samples[n]) if n in self.samples else len(t.eval_docs) for n, t in sorted(leaves.items())}


def draw_indices(n_docs: int, limit: int | None, seed: int, task_name: str) -> list[int] | None:
    """A seeded, sorted subsample of document indices; None means every document.

    Seeded by (seed, task name) through a string, not `hash()`, so every process draws the same items.
    """
    if limit is None or limit >= n_docs:
        return None
    rng = random.Random(f"evomerge:{seed}:{task_name}")
    return sorted(rng.sample(range(n_docs), limit))


def read_metric(results: dict[str, Any], objective: Objective) -> float:
    """The objective's metric from lm-eval's results; `metric` may name a filter as in "exact_match,strict-match"."""
    key = metric_key(results, objective)
    return _number(objective, key, results["results"][objective.task][key])


def metric_key(results: dict[str, Any], objective: Objective) -> str:
    """The "metric,filter" key lm-eval reports the objective's metric under."""
    task_results = results["results"].get(objective.task)
    if task_results is None:
        raise TaskError(
            f"objective {objective.key}: lm-eval reported no results under {objective.task!r} — a group reports "
            "a score only when its YAML has aggregate_metric_list"
        )
    values = {k: v for k, v in task_results.items() if "," in k and "_stderr," not in k}
    if objective.metric in values:
        return objective.metric
    matches = sorted(k for k in values if k.split(",")[0] == objective.metric)
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise TaskError(
            f"objective {objective.key}: the metric is reported under several filters ({', '.join(matches)}) — "
            f"name one, for example metric: {matches[0]}"
        )
    reported = sorted({k.split(",")[0] for k in values})
    raise TaskError(f"task {objective.task!r} reports no metric {objective.metric!r}; it reports {', '.join(reported)}")


def _number(objective: Objective, key: str, value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise TaskError(f"objective {objective.key}: lm-eval reported {key} = {value}, which is not a finite number")
    return number


def _aggregation_name(function: Any) -> str | None:
    """The name lm-eval registered an aggregation function under (items files store names, not code)."""
    from lm_eval.api.registry import AGGREGATION_REGISTRY, get_aggregation

    get_aggregation("mean")  # fills the registry on first use
    return next((name for name, registered in AGGREGATION_REGISTRY.items() if registered is function), None)


def _task_manager(names: Sequence[str], include_paths: Sequence[str]) -> Any:
    """Index only the include paths when they hold every task: indexing lm-eval's thousands of built-in
    YAMLs takes seconds, and a search of custom tasks should not pay for it."""
    if include_paths:
        local = _indexed(tuple(include_paths), False)
        if all(n in local.all_tasks for n in names):
            return local
    manager = _indexed(tuple(include_paths), True)
    unknown = [n for n in names if n not in manager.all_tasks]
    if unknown:
        raise TaskError(
            f"objectives: unknown lm-eval task(s) {', '.join(unknown)} — check the name, or add the directory of "
            "your task YAML to evaluation.includePaths"
        )
    return manager


@functools.lru_cache(maxsize=8)
def _indexed(include_paths: tuple[str, ...], include_defaults: bool) -> Any:
    """A TaskManager per (paths, defaults), kept for the process: the search and its held-out suite, and
    every engine of a batch, share one index (loading tasks from it still builds fresh Task objects)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include_paths) or None, include_defaults=include_defaults)


def _load(manager: Any, names: Sequence[str]) -> dict[str, Any]:
    """Load the named tasks and groups as one task dict; a task also reached through a requested group
    is taken from the group (lm-eval refuses the same task twice, yet "the group and its hardest member"
    is a natural pair of objectives)."""
    loaded = {name: manager.load([name]) for name in names}
    covered = {name for name in names for other in names
               if other != name and (name in loaded[other]["tasks"] or name in loaded[other]["groups"])}
    merged: dict[str, Any] = {"tasks": {}, "groups": {}, "group_map": {}}
    for name in names:
        if name not in covered:
            for part in merged:
                merged[part].update(loaded[name][part])
    return merged


def _limits_per_leaf(objectives: Sequence[Objective], task_dict: dict[str, Any]) -> dict[str, int | None]:
    """Each leaf task's sample size: the largest limit of the objectives reading it (no limit wins)."""
    limits: dict[str, int | None] = {}
    for objective in objectives:
        for leaf in _leaves(objective.task, task_dict):
            if leaf not in limits:
                limits[leaf] = objective.limit
            elif limits[leaf] is None or objective.limit is None:
                limits[leaf] = None
            else:
                limits[leaf] = max(limits[leaf], objective.limit)
    return limits


def _leaves(name: str, task_dict: dict[str, Any]) -> list[str]:
    if name in task_dict["tasks"]:
        return [name]
    children = task_dict["group_map"].get(name)
    if children is None:
        raise TaskError(
            f"objectives: {name!r} is an lm-eval tag, which has no score of its own — list its tasks as "
            "objectives, or use a group that aggregates them"
        )
    return [leaf for child in children for leaf in _leaves(child, task_dict)]
