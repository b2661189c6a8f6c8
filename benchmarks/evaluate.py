"""Candidates scored per minute by the resident engine, and where a candidate's time goes.

    nice python benchmarks/evaluate.py [--candidates 12] [--peer-candidates 4] [--threads 2] [--limit N]

Models and tasks: the nano expert zoo (`build_zoo("nano", seed)`: a 2-layer Llama base, its skill
experts, and its generate_until search tasks), built on first use and cached. Candidates are seeded
random task_arithmetic recipes over all experts. Two ways of scoring them run side by side:

  resident  ResidentEngine: experts in memory, one live model re-merged in place, tasks built once.
  peer      what the resident engine avoids: per candidate, export the merge to disk, load it, build
            the tasks and datasets again (evaluate_model on the exported checkpoint; the task index is
            kept per process).

Printed: candidates per minute of each and their ratio; the resident candidate's time split into
re-merge, model calls (lm-eval's LM methods) and lm-eval's own bookkeeping (building requests,
filters, metrics); the re-merge share against its target (< 5 %).

On a busy machine, parallel regions wait for a time slice on every core: compare --threads 1 and
NUMBA_NUM_THREADS=1 (the merge kernels' thread count) against the defaults.
"""

from __future__ import annotations

import os
import sys

# Run as `python benchmarks/evaluate.py`, this folder comes first on sys.path, where this file would
# shadow Hugging Face's `evaluate` (which lm-eval imports);
# only modules Python loaded at startup (os, sys) are imported before it is dropped.
HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != HERE]

import argparse  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import torch  # noqa: E402

from evomerge.evaluate.engines.resident import EngineTimings, ResidentEngine  # noqa: E402
from evomerge.evaluate.model import evaluate_model  # noqa: E402
from evomerge.merge.export import export_merge  # noqa: E402
from evomerge.merge.recipe import ExpertWeights, MergeRecipe  # noqa: E402
from evomerge.models.checkpoint import open_checkpoint  # noqa: E402
from evomerge.spec.merge_search import Objective  # noqa: E402
from evomerge.zoo import build_zoo  # noqa: E402

TARGET_MERGE_SHARE = 0.05


def random_recipes(base: Path, experts: dict[str, Path], n: int, seed: int) -> list[MergeRecipe]:
    rng = random.Random(seed)
    return [
        MergeRecipe(
            method="task_arithmetic", base_uri=str(base),
            experts=tuple(ExpertWeights(name, str(path), {"weight": {"all": rng.uniform(0.0, 1.0)}})
                          for name, path in experts.items()),
        )
        for _ in range(n)
    ]


def timed_model_calls(lm: Any) -> Callable[[], float]:
    """Wrap the LM's request methods; return a reader of the seconds spent inside them."""
    spent = [0.0]
    for name in ("loglikelihood", "loglikelihood_rolling", "generate_until"):
        method = getattr(lm, name)

        def wrapper(requests, disable_tqdm=False, _method=method):
            started = time.perf_counter()
            try:
                return _method(requests, disable_tqdm=disable_tqdm)
            finally:
                spent[0] += time.perf_counter() - started

        setattr(lm, name, wrapper)
    return lambda: spent[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=12, help="resident candidates timed (after one warm-up)")
    parser.add_argument("--peer-candidates", type=int, default=4,
                        help="of those, how many the reload-per-candidate peer also scores")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target machine has 2 cores)")
    parser.add_argument("--limit", type=int, default=None, help="documents per task (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    zoo = build_zoo("nano", args.seed)
    tasks = [zoo.search_tasks[skill] for skill in zoo.skills]
    objectives = [Objective(task=t, metric=zoo.metric, limit=args.limit) for t in tasks]
    recipes = random_recipes(zoo.base, zoo.experts, 1 + args.candidates, args.seed)
    print(f"models: nano zoo (seed {args.seed}) — base + {len(zoo.experts)} experts ({', '.join(zoo.experts)})")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; torch threads {args.threads}, "
          f"NUMBA_NUM_THREADS {os.environ.get('NUMBA_NUM_THREADS', 'default')} (the merge kernels' threads)")

    setup = time.perf_counter()
    engine = ResidentEngine(zoo.base, dict(zoo.experts), objectives, [str(zoo.tasks_dir)], "cpu", 16, seed=args.seed)
    setup = time.perf_counter() - setup
    print(f"tasks: {', '.join(f'{t} ({n} docs)' for t, n in engine.suite.documents.items())}; "
          f"output {zoo.metric}; engine setup {setup:.1f}s (once per search)")
    model_calls = timed_model_calls(engine.lm)
    base = open_checkpoint(zoo.base)
    experts = {name: open_checkpoint(path) for name, path in zoo.experts.items()}

    with tempfile.TemporaryDirectory() as tmp:
        def peer(index: int, recipe: MergeRecipe) -> float:
            started = time.perf_counter()
            merged = export_merge(recipe, base, experts, Path(tmp) / f"candidate{index}")
            evaluate_model(merged, objectives, [str(zoo.tasks_dir)], {"device": "cpu", "batch_size": 16}, seed=args.seed)
            return time.perf_counter() - started

        engine.score(recipes[0])  # warm-up of both sides: first-call allocations and lazy imports
        peer(0, recipes[0])
        engine.timings = EngineTimings()
        calls_before = model_calls()
        resident_s: list[float] = []
        peer_s: list[float] = []
        # Interleaved, on the same recipes: load from other processes hits both sides alike, and both
        # generate the same texts (a merge's outputs decide how long generation runs).
        for index, recipe in enumerate(recipes[1:], start=1):
            started = time.perf_counter()
            engine.score(recipe)
            resident_s.append(time.perf_counter() - started)
            if index <= args.peer_candidates:
                peer_s.append(peer(index, recipe))

    n = len(resident_s)
    timings = engine.timings
    calls = model_calls() - calls_before
    per = statistics.median(resident_s)
    share = timings.merge_s / sum(resident_s)
    print(f"\nresident: {n} candidates in {sum(resident_s):.2f}s, median {per * 1000:.0f} ms → "
          f"{60 / per:.1f} candidates/min")
    print(f"  mean per candidate: re-merge {timings.merge_s / n * 1000:.1f} ms + scoring {timings.score_s / n * 1000:.0f} ms "
          f"(model calls {calls / n * 1000:.0f} ms, lm-eval bookkeeping {(timings.score_s - calls) / n * 1000:.0f} ms)")
    verdict = "within" if share < TARGET_MERGE_SHARE else "ABOVE"
    print(f"  re-merge share {share * 100:.2f}% — {verdict} the {TARGET_MERGE_SHARE * 100:.0f}% target")
    peer_median = statistics.median(peer_s)
    resident_same = statistics.median(resident_s[: len(peer_s)])
    print(f"\npeer (export + reload + rebuild tasks per candidate), same {len(peer_s)} recipes: median "
          f"{peer_median * 1000:.0f} ms → {60 / peer_median:.1f} candidates/min")
    print(f"resident / peer throughput on those recipes: {peer_median / resident_same:.2f}×")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} — other processes share these cores; times are upper bounds")

if __name__ == "__main__":
    main()
