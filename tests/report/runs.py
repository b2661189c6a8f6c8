"""Hand-made run directories with known contents: the report is checked against numbers we chose."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evomerge.spec.merge_search import GenerationSummary

OBJECTIVES = [{"task": "tiny_a", "metric": "acc"}, {"task": "tiny_b", "metric": "acc", "weight": "3"}]
HELD_OUT = [{"task": "tiny_a_test", "metric": "acc"}, {"task": "tiny_b_test", "metric": "acc"}]
GROUPS = ["embed", "blocks0.attn", "blocks0.mlp", "blocks1.attn", "blocks1.mlp", "head"]
EXPERTS = ["e0", "e1", "e2"]
POPULATION, GENERATIONS, ROUNDS = 4, 3, 2
FAILED_ID = "c000005"
CACHED_ID = "c000009"
HELD_OUT_SCORES = {"tiny_a_test/acc": 0.61, "tiny_b_test/acc": 0.52}


def spec() -> dict[str, Any]:
    return {
        "baseModel": {"uri": "/models/base"},
        "experts": [{"name": n, "uri": f"/models/{n}"} for n in EXPERTS],
        "merge": {"method": "ties", "granularity": "layerGroups", "layerGroups": 2, "splitModules": True,
                  "evolve": ["weight", "density"]},
        "search": {"algorithm": "ga", "populationSize": POPULATION, "maxGenerations": GENERATIONS, "rounds": ROUNDS, "seed": 3},
        "objectives": OBJECTIVES,
        "heldOut": HELD_OUT,
    }


def scores_of(index: int) -> dict[str, float]:
    """Scores that improve with the generation and trade tiny_a against tiny_b within one."""
    generation, member = divmod(index, POPULATION)
    return {"tiny_a/acc": round(0.30 + 0.05 * generation + 0.04 * member, 4),
            "tiny_b/acc": round(0.70 - 0.05 * member + 0.01 * generation, 4)}


def fitness_of(scores: dict[str, float]) -> float:
    return (scores["tiny_a/acc"] + 3 * scores["tiny_b/acc"]) / 4


def recipe(layer_path: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "method": "ties", "baseUri": "/models/base", "groups": GROUPS, "options": {"lambda": 1.0},
        "experts": [
            {"name": n, "uri": f"/models/{n}", "params": {
                "weight": {g: round(0.1 + 0.1 * i + 0.05 * j, 3) for j, g in enumerate(GROUPS)},
                "density": {g: round(0.9 - 0.1 * i - 0.02 * j, 3) for j, g in enumerate(GROUPS)},
            }} for i, n in enumerate(EXPERTS)
        ],
    }
    if layer_path is not None:
        data["layerPath"] = layer_path
    return data


LAYER_PATH = {
    "models": ["merged", "e1"],
    "hops": [["merged", 0, 1.0], ["merged", 1, 1.0], ["e1", 1, 0.8], ["e1", 2, 1.25], ["merged", 2, 1.1], ["merged", 3, 1.0]],
    "sources": {},
}


def events() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for generation in range(GENERATIONS * ROUNDS):
        round_ = generation // GENERATIONS
        ids = [f"c{generation * POPULATION + m:06d}" for m in range(POPULATION)]
        out.append({"type": "ask", "round": round_, "generation": generation, "ids": ids,
                    "vectors": [[0.5] * 4 for _ in ids]})
        fits = []
        for index, cid in enumerate(ids, start=generation * POPULATION):
            if cid == FAILED_ID:
                out.append({"type": "result", "id": cid, "scores": None, "error": "RuntimeError: CUDA out of memory",
                            "seconds": 1.5, "cached": False})
                continue
            scores = scores_of(index)
            fits.append(fitness_of(scores))
            out.append({"type": "result", "id": cid, "scores": scores, "error": None,
                        "seconds": 0.0 if cid == CACHED_ID else 2.0, "cached": cid == CACHED_ID})
        out.append({"type": "tell", "ids": ids})
        summary = GenerationSummary(round=round_, generation=generation, count=len(ids), failed=len(ids) - len(fits),
                                    best=max(fits), mean=sum(fits) / len(fits), worst=min(fits), seconds=8.0)
        out.append({"type": "generation", "summary": summary.to_wire()})
    return out


def best_id() -> str:
    scored = [(fitness_of(scores_of(i)), -i, f"c{i:06d}") for i in range(POPULATION * GENERATIONS * ROUNDS)
              if f"c{i:06d}" != FAILED_ID]
    return max(scored)[2]


def write_run(root: Path, *, finished: bool = True, layer_path: bool = False, comparison: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "spec.json").write_text(json.dumps(spec()))
    (root / "history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events()))
    if finished:
        best = best_id()
        index = int(best[1:])
        (root / "summary.json").write_text(json.dumps({
            "stopReason": "maxGenerations reached", "evaluations": POPULATION * GENERATIONS * ROUNDS,
            "failedEvaluations": 1, "generations": GENERATIONS * ROUNDS,
            "best": {"candidate": best, "fitness": fitness_of(scores_of(index)), "scores": scores_of(index),
                     "recipe": recipe(LAYER_PATH if layer_path else None)},
            "heldOut": HELD_OUT_SCORES, "mergedModel": str(root / "merged"),
        }))
    if comparison:
        rows = [
            {"name": "expert e0", "search": {"tiny_a/acc": 0.5, "tiny_b/acc": 0.2}, "heldOut": {"tiny_a_test/acc": 0.48, "tiny_b_test/acc": 0.21}},
            {"name": "uniform merge", "search": {"tiny_a/acc": 0.4, "tiny_b/acc": 0.4}, "heldOut": {"tiny_a_test/acc": 0.41, "tiny_b_test/acc": 0.39}},
            {"name": "evolved merge", "search": {"tiny_a/acc": 0.6, "tiny_b/acc": 0.55}, "heldOut": HELD_OUT_SCORES},
        ]
        (root / "comparison.json").write_text(json.dumps(rows))
    return root
