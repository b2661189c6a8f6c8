"""A real search on a cheap deterministic scorer, runnable as its own process so tests can kill it.

    python -m tests.runner.synthetic_search ALGORITHM MODE RUN_DIR [SECONDS_PER_EVALUATION]

The scorer reads the candidate's genome vector (no model is merged), sleeps a little so a kill lands
mid-generation, and fails for about one recipe in seven (by digest), so resumes also replay failures.
Prints the outcome as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from evomerge.executors.local import LocalExecutor
from evomerge.merge.recipe import MergeRecipe
from evomerge.runner.history import JsonlHistory
from evomerge.runner.loop import SearchOutcome, SearchRunner
from evomerge.search.genome import Genome
from evomerge.search.optimizer import make_optimizer
from evomerge.spec.merge_search import MergeSearchSpec

POPULATION = 6


def genome() -> Genome:
    return Genome.build(
        "task_arithmetic", "file:///base", [(f"e{i}", f"file:///e{i}") for i in range(3)], ("embed", "blocks0", "head"),
        ["weight"], {"weight": (-1.0, 1.0)}, {},
    )


def spec(algorithm: str, mode: str, **search) -> MergeSearchSpec:
    objectives = [{"task": "synthetic", "metric": "near"}]
    if algorithm == "nsga2":
        objectives.append({"task": "synthetic", "metric": "small"})
    return MergeSearchSpec.model_validate({
        "baseModel": {"uri": "file:///base"},
        "experts": [{"name": f"e{i}", "uri": f"file:///e{i}"} for i in range(3)],
        "merge": {"method": "task_arithmetic", "granularity": "layerGroups", "layerGroups": 1},
        "search": {
            "algorithm": algorithm, "mode": mode, "populationSize": POPULATION, "seed": 11,
            "maxGenerations": 4 if algorithm == "evogm" else 6, "rounds": 2 if algorithm == "evogm" else 1,
            "evogm": {"hiddenDims": [32, 32], "trainingSteps": 50, "learningRate": 0.002}, **search,
        },
        "objectives": objectives,
        "evaluation": {"parallelism": 3, "maxFailedEvaluations": 1000},
    })


def scorer(seconds: float):
    g = genome()
    target = np.linspace(-0.3, 0.6, g.dim)

    def score(recipe: MergeRecipe) -> dict[str, float]:
        time.sleep(seconds)
        if int(recipe.digest(), 16) % 7 == 0:
            raise RuntimeError("synthetic evaluation failure")
        x = g.encode(recipe)
        return {"synthetic/near": -float(np.sum((x - target) ** 2)), "synthetic/small": -float(np.sum(x**2))}

    return score


def run(algorithm: str, mode: str, run_dir: Path, seconds: float = 0.0) -> SearchOutcome:
    s, g = spec(algorithm, mode), genome()
    runner = SearchRunner(
        s, g, lambda: make_optimizer(g, s.search, len(s.objectives)), LocalExecutor(lambda: scorer(seconds)),
        JsonlHistory(Path(run_dir) / "history.jsonl"),
    )
    return runner.run()


def summary(outcome: SearchOutcome) -> dict:
    best = outcome.best
    return {
        "stopReason": outcome.stop_reason,
        "evaluations": outcome.evaluations,
        "best": None if best is None else {"id": best.id, "fitness": best.fitness, "vector": best.vector},
        "pareto": sorted(c.id for c in outcome.pareto_front),
    }


if __name__ == "__main__":
    algorithm, mode, directory = sys.argv[1:4]
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 0.015
    print(json.dumps(summary(run(algorithm, mode, Path(directory), seconds))))
