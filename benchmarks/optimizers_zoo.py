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

    .venv/bin/python -P benchmarks/optimizers_zoo.py --seeds 10 --variants evogm cmaes ga random --random-seeds 2 \
        --markdown-out benchmarks/results/optimizers_zoo.md
        # about 65 minutes on 2 quiet cores (the zoo builds first if it is not cached: about 5 more)
    .venv/bin/python -P benchmarks/optimizers_zoo.py --seeds 2 --budget 80 --jobs 1
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # each search process keeps to one core; --jobs sets how many run

import argparse
import json
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
POPULATION, TARGET_SHARE, paired = _optimizers["POPULATION"], _optimizers["TARGET_SHARE"], _optimizers["paired"]
verdict = _optimizers["verdict"]
ZOO_VARIANTS = ("evogm", "cmaes", "ga", "evogm-paper", "random")  # per seed in this order; random's runs all come last
OBJECTIVE_SETS = {  # name → the skills scored (the zoo's other experts are distractors)
    "skills": ("add", "rev", "spell"),  # `evomerge demo`'s: `upper` is the distractor
    "upper": ("add", "rev", "upper"),  # issue #22's: spelling digits is the distractor
}


@dataclass(frozen=True)
class Job:
    variant: str
    seed: int
    budget: int
    size: str
    zoo_seed: int
    limit: int
    work: Path
    objectives: str = "skills"


@dataclass(frozen=True)
class Result:
    variant: str
    seed: int
    objectives: str
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
    data["metadata"]["name"] = f"zoo-{job.objectives}-{job.variant}-{job.seed}"
    data["spec"]["search"] = search_spec(algorithm, job.budget, job.seed, overrides).search.model_dump(
        mode="json", by_alias=True, exclude_none=True)
    skills = OBJECTIVE_SETS[job.objectives]
    data["spec"]["objectives"] = [{"task": zoo.search_tasks[s], "metric": zoo.metric, "limit": job.limit} for s in skills]
    data["spec"]["heldOut"] = [{"task": zoo.heldout_tasks[s], "metric": zoo.metric} for s in skills]
    return MergeSearch.model_validate(data)


def run_one(job: Job) -> Result:
    """One search; its run directory is kept, so an interrupted benchmark resumes each search by replay. Its Result is
    read from that directory whether it ran now or before (a replay would train EvoGM's generators again: minutes)."""
    from evomerge.runner.local import run_local

    start = time.perf_counter()
    if not _finished(job):
        run_local(search_for(job), _run_dir(job), export=False)
    return _read_finished(job, start)


def _read_finished(job: Job, start: float) -> Result:
    """A finished run's Result from its run directory: candidates in ask order from history.jsonl, fitness as the
    runner computes it from their scores, held-out from summary.json."""
    from evomerge.catalogue.contracts import HISTORY_FILE, SUMMARY_FILE
    from evomerge.evaluate.scoring import fitness

    run = _run_dir(job)
    objectives = search_for(job).spec.objectives
    asked, results = [], {}
    for line in (run / HISTORY_FILE).read_text().splitlines():
        event = json.loads(line)
        if event["type"] == "ask":
            asked += [(c, v, event["generation"]) for c, v in zip(event["ids"], event["vectors"])]
        elif event["type"] == "result":
            results[event["id"]] = event
    asked.sort(key=lambda a: a[0])  # ids count up in ask order, as run_one sorts the live run's candidates
    scored = [results[c] for c, _, _ in asked]
    held_out = json.loads((run / SUMMARY_FILE).read_text()).get("heldOut") or {}
    return Result(job.variant, job.seed, job.objectives,
                  np.array([fitness(objectives, r["scores"]) if r["error"] is None else -np.inf for r in scored]),
                  np.array([v for _, v, _ in asked]), np.array([g for _, _, g in asked]),
                  float(np.mean(list(held_out.values()))) if held_out else float("nan"),
                  time.perf_counter() - start, sum(r["seconds"] for r in scored))


def spread(result: Result, generations: int) -> np.ndarray:
    """Mean per-gene sd of each generation's candidates, over the first `generations` generations asked."""
    return np.array([result.vectors[result.generations == g].std(axis=0).mean() for g in range(generations)])


def _pm(values: np.ndarray) -> str:
    return f"{values.mean():.3f} ± {values.std():.3f}"


def report(results: list[Result], variants: list[str], budget: int, long: int, limit: int,
           command: str) -> tuple[str, str]:
    """Per objective set: the seeds every optimizer finished, their scores at equal budget, paired tests of the default
    EvoGM against each peer (search and held-out), evaluations to random search's best, and the spread per generation;
    and those verdicts in short (the README's zoo summary)."""
    by = {(r.objectives, r.variant, r.seed): r for r in results}
    verdicts: dict[tuple[str, str, str], tuple] = {}  # (objective set, peer, search / held-out) → paired()
    reached: dict[str, str] = {}  # objective set → EvoGM's evaluations to random's best
    lines = [
        f"### Optimizers on the expert zoo (populationSize {POPULATION})",
        "",
        f"`{command}` ({sum(len(r.fitness) for r in results)} evaluations, {sum(r.evaluating for r in results) / 60:.0f} "
        "min of merging and scoring on one core each). `evomerge demo`'s search over the small zoo (task arithmetic over "
        "all four experts, two layer groups plus embeddings and head: d = 16, weights in [0, 1.5]) through the local "
        f"runner, each optimizer at its defaults (CMA-ES: σ0 = 1/6, no seed rows); *search* = mean exact match over the "
        f"objective set's three skills on {limit} seeded items each of the search split (the objective), *held-out* = the "
        f"run's best merge on the whole held-out split. Random search runs {long} evaluations, the others {budget}; mean ± "
        "sd over seeds, higher is better. *W/T/L*: seeds on which the default EvoGM scores higher / the same / lower than "
        "the peer; *Δ*: median of EvoGM's score minus the peer's; *p*: two-sided Wilcoxon signed-rank test.",
        "",
    ]
    for name, skills in OBJECTIVE_SETS.items():
        seeds = sorted({r.seed for r in results if r.objectives == name})
        have = [s for s in seeds if all((name, v, s) in by for v in variants if v != "random")]
        if not have:
            continue
        with_random = [s for s in have if (name, "random", s) in by]
        lines += [f"**{name}** — objectives {', '.join(skills)}; {len(have)} seeds ({len(with_random)} with random "
                  f"search's {long})", "",
                  f"| optimizer | best search score at {budget} | held-out of the best | evaluations to reach random's best "
                  f"(median; seeds reaching it) |", "|---|---:|---:|---:|"]
        for variant in variants:
            runs = [by[name, variant, s] for s in (with_random if variant == "random" else have) if (name, variant, s) in by]
            if not runs:
                continue
            at_budget = np.array([r.fitness[:budget].max() for r in runs])
            held = np.array([r.held_out for r in runs])
            reach = np.array([evaluations_to_reach(np.maximum.accumulate(by[name, variant, s].fitness),
                                                   by[name, "random", s].fitness.max()) for s in with_random])
            median = float(np.median(reach)) if len(reach) else np.nan
            shown = ("—" if not len(reach) else f"{median:g} ({100 * median / long:.1f} %)" if np.isfinite(median)
                     else "never") + f"; {int(np.isfinite(reach).sum())}/{len(reach)}"
            lines.append(f"| {variant} | {_pm(at_budget)} | {_pm(held)} | {shown} |")
            if variant == "evogm" and len(reach):
                reached[name] = shown
        lines += ["", "| default EvoGM vs | on | W/T/L | Δ (median) | p |", "|---|---|---:|---:|---:|"]
        for peer in [v for v in ("cmaes", "ga", "evogm-paper") if v in variants]:
            for what, read in (("search", lambda r: r.fitness[:budget].max()), ("held-out", lambda r: r.held_out)):
                ours = np.array([read(by[name, "evogm", s]) for s in have])
                theirs = np.array([read(by[name, peer, s]) for s in have])
                w, t, l, delta, p = verdicts[name, peer, what] = paired(-ours, -theirs)  # paired() compares gaps
                lines.append(f"| {peer} | {what} | {w}/{t}/{l} | {delta:+.3f} | {p:.2g} |")
        generations = budget // POPULATION
        lines += ["", "Spread of the proposals (mean per-gene sd of each generation's candidates, genes in [0, 1.5]; mean "
                  "over seeds):", "", "| optimizer | " + " | ".join(f"g{g}" for g in range(generations)) + " |",
                  "|---|" + "---:|" * generations]
        for variant in [v for v in ("evogm", "evogm-paper", "cmaes", "ga") if v in variants]:
            mean = np.mean([spread(by[name, variant, s], generations) for s in have], axis=0)
            lines.append(f"| {variant} | " + " | ".join(f"{v:.2f}" for v in mean) + " |")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n", summary(verdicts, reached, budget, long)


def summary(verdicts: dict[tuple[str, str, str], tuple], reached: dict[str, str], budget: int, long: int) -> str:
    """The default EvoGM against CMA-ES and the GA on each objective set, search and held-out, and the evaluations it
    takes to reach random search's best (the target: ≤ TARGET_SHARE % of random's) — the README's zoo summary."""
    sets = [name for name in OBJECTIVE_SETS if any(key[0] == name for key in verdicts)]
    lines = [f"| default EvoGM vs ({budget} evaluations) | on | "
             + " | ".join(f"{name} ({', '.join(OBJECTIVE_SETS[name])})" for name in sets) + " |",
             "|---|---|" + "---|" * len(sets)]
    for peer, label in (("cmaes", "CMA-ES"), ("ga", "the GA")):
        for what in ("search", "held-out"):
            if any((name, peer, what) in verdicts for name in sets):
                lines.append(f"| {label} | {what} | " + " | ".join(
                    verdict(*verdicts[name, peer, what]) if (name, peer, what) in verdicts else "—" for name in sets)
                    + " |")
    if reached:
        lines.append(f"| random search's best of {long}: evaluations EvoGM takes (median; seeds reaching it; target ≤ "
                     f"{TARGET_SHARE:g} %) | search | " + " | ".join(reached.get(name, "—") for name in sets) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=("nano", "small"))
    parser.add_argument("--zoo-seed", type=int, default=0, help="Which zoo to search (built and cached on first use).")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVE_SETS), choices=tuple(OBJECTIVE_SETS))
    parser.add_argument("--variants", nargs="+", default=list(ZOO_VARIANTS), choices=ZOO_VARIANTS,
                        help="Optimizers run, per seed in this order (evogm first: the others are compared with it).")
    parser.add_argument("--budget", type=int, default=160, help="Equal budget of the comparison.")
    parser.add_argument("--random-factor", type=int, default=10, help="Random search runs this many times the budget.")
    parser.add_argument("--random-seeds", type=int,
                        help="Run random search on only the first this many seeds (default: all); its runs come last.")
    parser.add_argument("--limit", type=int, default=60, help="Items per skill of the search split each objective scores.")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="Searches run at once (one core each).")
    parser.add_argument("--work", type=Path, default=Path("/tmp/evomerge-optimizers-zoo"),
                        help="Run directories, kept so an interrupted benchmark resumes (a finished run replays in "
                        "seconds, so rerunning with the same arguments writes the report); --fresh empties it.")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--finished-only", action="store_true",
                        help="Report only the runs already finished under --work; start none.")
    parser.add_argument("--markdown-out", type=Path)
    args = parser.parse_args()
    if args.budget % POPULATION:
        parser.error(f"--budget must be a multiple of populationSize {POPULATION}, got {args.budget}")
    if args.fresh:
        shutil.rmtree(args.work, ignore_errors=True)
    from evomerge.zoo import build_zoo

    build_zoo(args.size, seed=args.zoo_seed, progress=lambda line: print(f"zoo: {line}", flush=True))
    long = args.random_factor * args.budget
    random_seeds = args.seeds if args.random_seeds is None else min(args.random_seeds, args.seeds)
    jobs = [Job(v, s, args.budget, args.size, args.zoo_seed, args.limit, args.work, o)
            for s in range(args.seeds) for o in args.objectives for v in args.variants if v != "random"]
    if "random" in args.variants:  # last: each costs --random-factor of the others' runs
        jobs += [Job("random", s, long, args.size, args.zoo_seed, args.limit, args.work, o)
                 for s in range(random_seeds) for o in args.objectives]
    if args.finished_only:
        jobs = [j for j in jobs if _finished(j)]
    results = []
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for result in pool.map(run_one, jobs):
            results.append(result)
            print(f"[{len(results)}/{len(jobs)}] {result.objectives} {result.variant} seed {result.seed}: best "
                  f"{result.fitness.max():.3f} after {len(result.fitness)}, held-out {result.held_out:.3f} "
                  f"({result.seconds:.0f} s)", flush=True)
    command = shlex.join([".venv/bin/python", "-P", "benchmarks/optimizers_zoo.py", *sys.argv[1:]])
    text, short = report(results, args.variants, args.budget, long, args.limit, command)
    print(text, end="")
    if args.markdown_out:
        args.markdown_out.write_text(text)
        args.markdown_out.with_name(args.markdown_out.stem + "_summary.md").write_text(short)


def _run_dir(job: Job) -> Path:
    return job.work / f"{job.objectives}-{job.variant}-s{job.seed}"


def _finished(job: Job) -> bool:
    """Whether the job's run directory holds a finished search (the runner writes its summary last)."""
    from evomerge.catalogue.contracts import SUMMARY_FILE
    return (_run_dir(job) / SUMMARY_FILE).exists()


if __name__ == "__main__":
    main()
