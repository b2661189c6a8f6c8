"""lm-evaluation-harness tasks, built once per search and reused for every candidate."""

from __future__ import annotations

from typing import Any, Sequence

from ..spec.merge_search import Objective


class TaskError(ValueError):
    """A task or metric lm-eval does not know."""


def build_task_dict(objectives: Sequence[Objective], include_paths: Sequence[str] = ()) -> dict[str, Any]:
    from lm_eval.tasks import TaskManager, get_task_dict

    manager = TaskManager(include_path=list(include_paths) or None)
    names = sorted({o.task for o in objectives})
    unknown = [n for n in names if n not in manager.all_tasks]
    if unknown:
        raise TaskError(
            f"objectives: unknown lm-eval task(s) {', '.join(unknown)} — check the name, or add the directory of "
            "your task YAML to evaluation.includePaths"
        )
    return get_task_dict(names, manager)


def read_metric(results: dict[str, Any], objective: Objective) -> float:
    task_results = results["results"].get(objective.task, {})
    for key, value in task_results.items():
        if key.split(",")[0] == objective.metric and not key.endswith("_stderr,none"):
            return float(value)
    reported = sorted({k.split(",")[0] for k in task_results if "stderr" not in k and k != "alias"})
    raise TaskError(f"task {objective.task!r} reports no metric {objective.metric!r}; it reports {', '.join(reported)}")
