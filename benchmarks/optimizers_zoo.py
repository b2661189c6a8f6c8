"""Sample efficiency of the optimizers on the expert zoo: real merges, scored through lm-evaluation-harness.

The synthetic landscapes of benchmarks/optimizers.py have a known optimum; this is the same comparison on the
search a user runs. Every search is `evomerge demo`'s MergeSearch over the small zoo (task arithmetic over the
four experts, distractor included, two layer groups plus embeddings and head: d = 16, weights in [0, 1.5]),
run end to end by the local runner (resident merge, in-process transformers, lm-eval's generate_until tasks,
score cache, budget), with the optimizer settings of benchmarks/optimizers.py. Each objective is a seeded
subsample of `--limit` items of a skill's search split, the same items for every optimizer of a seed; the best
merge of each run is then scored on the whole held-out split. Random search gets `--random-factor` × the budget;
the report shows the evaluations each optimizer needs to reach random search's best and the scores at equal
budgets.

    .venv/bin/python -P benchmarks/optimizers_zoo.py --markdown-out benchmarks/results/optimizers_zoo.md
        # 5 seeds, about 30 minutes on 2 cores (the zoo builds first if it is not cached: about 5 more)
    .venv/bin/python -P benchmarks/optimizers_zoo.py --seeds 2 --budget 80 --jobs 1
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # each search process keeps to one core; --jobs sets how many run

import argparse
import multiprocessing
import runpy
import shlex
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_optimizers = runpy.run_path(str(Path(__file__).with_name("optimizers.py")))  # by path: see async_eval._sibling
VARIANTS, search_spec, evaluations_to_reach = _optimizers["VARIANTS"], _optimizers["search_spec"], _optimizers["evaluations_to_reach"]
POPULATION, TARGET_SHARE = _optimizers["POPULATION"], _optimizers["TARGET_SHARE"]


@dataclass(frozen=True)
class Job:
    variant: str
    seed: int
    budget: int
    size: str
    zoo_seed: int
    limit: int
    work: Path


@dataclass(frozen=True)
class Result:
    variant: str
    seed: int
    fitness: np.ndarray  # every evaluation's fitness (mean over skills, search subsample), in ask order
    vectors: np.ndarray  # every candidate's genes, in ask order
    generations: np.ndarray  # each candidate's generation (numbered on across rounds)
    held_out: float  # the run's best merge on the whole held-out split, mean over skills
    seconds: float  # this process's time on the run (a replay of a finished run takes seconds)
    evaluating: float  # the run's evaluations' own time (merge and score), as its history recorded it


def search_for(job: Job):
    """`evomerge demo`'s search with this benchmark's optimizer settings and subsampled objectives."""
    from evomerge.cli.demo import demo_search
    from evomerge.spec import MergeSearch
    from evomerge.zoo import build_zoo

    zoo = build_zoo(job.size, seed=job.zoo_seed)
    algorithm, overrides = VARIANTS[job.variant]
    data = demo_search(zoo, algorithm, job.seed, 1, POPULATION).model_dump(mode="json", by_alias=True, exclude_none=True)
    data["metadata"]["name"] = f"zoo-{job.variant.replace('+', '-')}-{job.seed}"
    data["spec"]["search"] = search_spec(algorithm, job.budget, job.seed, overrides).search.model_dump(
        mode="json", by_alias=True, exclude_none=True)
    for objective in data["spec"]["objectives"]:
        objective["limit"] = job.limit
    return MergeSearch.model_validate(data)


def run_one(job: Job) -> Result:
    """One search; its run directory is kept, so an interrupted benchmark resumes each search by replay."""
    from evomerge.runner.local import run_local

    start = time.perf_counter()
    result = run_local(search_for(job), job.work / f"{job.variant}-s{job.seed}", export=False)
    candidates = sorted(result.outcome.candidates, key=lambda c: c.id)
    fitness = np.array([c.fitness if c.fitness is not None else -np.inf for c in candidates])
    held_out = float(np.mean(list(result.held_out.values()))) if result.held_out else float("nan")
    vectors = np.array([c.vector for c in candidates])
    generations = np.array([c.generation for c in candidates])
    evaluating = sum(c.seconds for c in candidates)
    return Result(job.variant, job.seed, fitness, vectors, generations, held_out, time.perf_counter() - start, evaluating)


def spread(result: Result, generations: int) -> np.ndarray:
    """Mean per-gene sd of each generation's candidates, over the first `generations` generations asked."""
    return np.array([result.vectors[result.generations == g].std(axis=0).mean() for g in range(generations)])


def _pm(values: np.ndarray) -> str:
    return f"{values.mean():.3f} ± {values.std():.3f}"


def report(results: list[Result], seeds: int, budget: int, long: int, limit: int, command: str) -> str:
    by = {(r.variant, r.seed): r for r in results}
    targets = {s: by["random", s].fitness.max() for s in range(seeds)}
    lines = [
        f"### Optimizers on the expert zoo ({seeds} seeds, populationSize {POPULATION})",
        "",
        f"`{command}` ({sum(len(r.fitness) for r in results)} evaluations, {sum(r.evaluating for r in results) / 60:.0f} "
        "min of merging and scoring on one core each). `evomerge demo`'s search over the small zoo (d = 16) through the local "
        f"runner; *search* = mean exact match over the three skills on {limit} seeded items each of the search split "
        f"(the objective), *held-out* = the run's best merge on the whole held-out split. Random search runs {long} "
        f"evaluations, the others {budget}; mean ± sd over seeds, higher is better.",
        "",
        f"| optimizer | evaluations to reach random's best (median) | seeds reaching it | % of random's {long} "
        f"| best search score at {budget} | held-out of the best |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = {}
    for variant in VARIANTS:
        runs = [by[variant, s] for s in range(seeds)]
        reach = np.array([evaluations_to_reach(np.maximum.accumulate(r.fitness), targets[r.seed]) for r in runs])
        at_budget = np.array([r.fitness[:budget].max() for r in runs])
        held = np.array([r.held_out for r in runs])
        median = float(np.median(reach))
        rows[variant] = (median, at_budget)
        shown = f"{median:g}" if np.isfinite(median) else f"> {budget if variant != 'random' else long}"
        share = f"{100 * median / long:.1f} %" if np.isfinite(median) else "—"
        lines.append(f"| {variant} | {shown} | {int(np.isfinite(reach).sum())}/{seeds} | {share} | {_pm(at_budget)} "
                     f"| {_pm(held)} |")
    generations = budget // POPULATION
    lines += ["", "Spread of the proposals (mean per-gene sd of each generation's candidates, genes in [0, 1.5]; mean over "
              "seeds) — what the synthetic benchmark measures as EvoGM's contraction:", "",
              "| optimizer | " + " | ".join(f"g{g}" for g in range(generations)) + " |", "|---|" + "---:|" * generations]
    for variant in ("evogm", "evogm+jitter", "cmaes", "ga"):
        mean = np.mean([spread(by[variant, s], generations) for s in range(seeds)], axis=0)
        lines.append(f"| {variant} | " + " | ".join(f"{v:.2f}" for v in mean) + " |")
    evogm, cmaes = rows["evogm"], rows["cmaes"]
    met = np.isfinite(evogm[0]) and 100 * evogm[0] / long <= TARGET_SHARE
    lines += [
        "",
        f"EvoGM reaches random search's best with ≤ {TARGET_SHARE:.0f} % of its evaluations: "
        f"{'✅' if met else '❌'} ({f'{100 * evogm[0] / long:.1f} %' if np.isfinite(evogm[0]) else 'never'}); "
        f"EvoGM beats CMA-ES at {budget} evaluations: {'✅' if evogm[1].mean() > cmaes[1].mean() else '❌'} "
        f"({evogm[1].mean():.3f} vs {cmaes[1].mean():.3f}).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=("nano", "small"))
    parser.add_argument("--zoo-seed", type=int, default=0, help="Which zoo to search (built and cached on first use).")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=160, help="Equal budget of the comparison.")
    parser.add_argument("--random-factor", type=int, default=10, help="Random search runs this many times the budget.")
    parser.add_argument("--limit", type=int, default=60, help="Items per skill of the search split each objective scores.")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="Searches run at once (one core each).")
    parser.add_argument("--work", type=Path, default=Path("/tmp/evomerge-optimizers-zoo"),
                        help="Run directories, kept so an interrupted benchmark resumes; --fresh empties it.")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--markdown-out", type=Path)
    args = parser.parse_args()
    if args.budget % POPULATION:
        parser.error(f"--budget must be a multiple of populationSize {POPULATION}, got {args.budget}")
    if args.fresh:
        shutil.rmtree(args.work, ignore_errors=True)
    from evomerge.zoo import build_zoo

    build_zoo(args.size, seed=args.zoo_seed, progress=lambda line: print(f"zoo: {line}", flush=True))
    long = args.random_factor * args.budget
    jobs = [Job(v, s, long if v == "random" else args.budget, args.size, args.zoo_seed, args.limit, args.work)
            for s in range(args.seeds) for v in VARIANTS]
    results = []
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for result in pool.map(run_one, jobs):
            results.append(result)
            print(f"[{len(results)}/{len(jobs)}] {result.variant} seed {result.seed}: best {result.fitness.max():.3f} "
                  f"after {len(result.fitness)}, held-out {result.held_out:.3f} ({result.seconds:.0f} s)", flush=True)
    command = shlex.join([".venv/bin/python", "-P", "benchmarks/optimizers_zoo.py", *sys.argv[1:]])
    text = report(results, args.seeds, args.budget, long, args.limit, command)
    print(text, end="")
    if args.markdown_out:
        args.markdown_out.write_text(text)


if __name__ == "__main__":
    main()
