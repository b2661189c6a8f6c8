"""EvoGM against CMA-ES, the GA and random search on synthetic merge landscapes with a known optimum (issue #22).

Each problem scores task-arithmetic coefficients in [-1, 1]^d (EvoGM's search space) and peaks at 0 at a hidden
optimum x* ∈ [0, 0.6]^d — positive coefficients of about 0.3, like the task-arithmetic optima of merges;
`smooth+noise` is the smooth problem with Gaussian noise (sd 0.25) on every score, where the best candidate is
the one the optimizer *saw* scoring highest and its gap is read on the noise-free score. Every optimizer runs
through the real SearchRunner (score cache and budget included) at its spec defaults, populationSize 20: EvoGM's
default variant (cmaHosted) and the released algorithm (`evogm.variant: paper`) in rounds of 1 + 3 iterations,
so EvoGM's first 160 evaluations are the paper's R = 2, T = 3 run and a longer run only appends rounds; CMA-ES
starts at EvoGM's start, the uniform mix (its one seed row), so its first generation holds EvoGM's known members
(each expert alone and the uniform mix; before issue 22's second pass the benchmark also seeded each expert alone,
which CMA-ES then evaluated twice), and runs with each initial step size of {1/10, 1/6, 1/4}, and the comparison takes the one with the best mean gap on each problem and budget,
measured on the reported seeds (a choice in CMA-ES's favour); CMA-ES at EvoGM's own first step is the control that
tells the step's share of a difference from the generators'. Random search runs 10× the smallest budget.

Every run's prefix is its shorter budget (no optimizer here reads the total), so one run at the largest budget
gives the gaps at each. The report: gaps per budget, paired per seed against EvoGM (wins / ties / losses, the
median difference and a two-sided Wilcoxon signed-rank p-value), evaluations to reach random search's best, and
per generation the spread of the proposals and the step sizes (σ of CMA-ES and of EvoGM's host CMA-ES). Seeds
0, 1, … are reported; the knobs of the cmaHosted variant were chosen on seeds 1000–1007 (other landscapes). A budget
is read on the seeds whose runs reached it, so the longer budgets may pair fewer seeds than the first.
Each finished run is appended to --runs (JSON lines), so an interrupted benchmark resumes and a report can be
written from the seeds done so far (--report-only).

    nice -n 19 .venv/bin/python benchmarks/optimizers.py --seeds 30 --markdown-out benchmarks/results/optimizers.md
    .venv/bin/python benchmarks/optimizers.py --seeds 2 --budgets 160
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.stats import wilcoxon

from evomerge.catalogue.algorithms import EvoGMOptions
from evomerge.executors.base import EvalResult
from evomerge.runner.loop import SearchRunner
from evomerge.search.genome import Genome
from evomerge.search.optimizer import make_optimizer
from evomerge.spec.merge_search import MergeSearchSpec

POPULATION = 20
ITERATIONS = 3  # EvoGM iterations per round (paper default), so maxGenerations = 4
RANDOM_FACTOR = 10
TARGET_SHARE = 10.0  # EvoGM reaches random search's best with ≤ 10 % of random's evaluations
NOISE = 0.25
CMA_SIGMAS = {"cmaes σ0=1/10": 0.1, "cmaes": 1 / 6, "cmaes σ0=1/4": 0.25}
# the control for EvoGM's own first step: its host's σ0 (0.15 of [-1, 1]) is 0.075 of CMA-ES's unit box, below the
# protocol's three, so a win over cmaes* may be the step alone; CMA-ES at that step tells G+'s share apart
EVOGM_SIGMA = "cmaes σ0=evogm's"
VARIANTS = {  # row name → (algorithm, search-spec overrides)
    "evogm": ("evogm", {}),
    "evogm-paper": ("evogm", {"evogm": {"variant": "paper"}}),
    **{name: ("cmaes", {"cmaes": {"sigma0": sigma}}) for name, sigma in CMA_SIGMAS.items()},
    EVOGM_SIGMA: ("cmaes", {"cmaes": {"sigma0": EvoGMOptions().sigma0 / 2}}),
    "ga": ("ga", {}),
    "random": ("random", {}),
}
SEEDED = (*CMA_SIGMAS, EVOGM_SIGMA)  # start at EvoGM's start, the uniform mix
PEERS = ("cmaes*", EVOGM_SIGMA, "ga", "evogm-paper", "random")  # what EvoGM is compared with; cmaes* = CMA-ES at its best σ0
TRACED = ("evogm", "evogm-paper", "cmaes")


@dataclass(frozen=True)
class Landscape:
    """A score to maximise and where it peaks; callable as the score (benchmarks/async_eval.py uses it so).
    `truth` is the noise-free score where `score` is noisy."""

    score: Callable[[np.ndarray], float]
    optimum: np.ndarray  # x*, where the true score is 0 (its maximum)
    truth: Callable[[np.ndarray], float] | None = None

    def __call__(self, x: np.ndarray) -> float:
        return self.score(x)

    def true(self, x: np.ndarray) -> float:
        return (self.truth or self.score)(x)


@dataclass(frozen=True)
class Problem:
    name: str
    experts: int
    groups: int
    build: Callable[[np.random.Generator, int], Landscape]

    @property
    def dim(self) -> int:
        return self.experts * self.groups


def _rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _optimum(rng: np.random.Generator, d: int) -> np.ndarray:
    return rng.uniform(0.0, 0.6, d)


def smooth(rng: np.random.Generator, d: int) -> Landscape:
    """A rotated ellipsoid (condition 10): one smooth basin, coefficients mildly coupled."""
    x_star, rot = _optimum(rng, d), _rotation(rng, d)
    a = rot @ np.diag(np.logspace(0, 1, d)) @ rot.T
    return Landscape(lambda x: -float((x - x_star) @ a @ (x - x_star)), x_star)


def rugged(rng: np.random.Generator, d: int) -> Landscape:
    """A bowl with ripples (Rastrigin-like, 3 waves per unit): many local optima, the global one at x*."""
    x_star = _optimum(rng, d)
    return Landscape(
        lambda x: -float(np.sum((x - x_star) ** 2) + 0.1 * np.sum(1.0 - np.cos(6.0 * np.pi * (x - x_star)))), x_star
    )


def interacting(rng: np.random.Generator, d: int, groups: int = 4) -> Landscape:
    """Per-group weights that trade off (condition 100, fully rotated) plus a penalty on each group's sum."""
    x_star, rot = _optimum(rng, d), _rotation(rng, d)
    q = rot @ np.diag(np.logspace(0, 2, d)) @ rot.T / 10.0
    sums = x_star.reshape(groups, -1).sum(axis=1)
    return Landscape(
        lambda x: -float((x - x_star) @ q @ (x - x_star) + 5.0 * np.sum((x.reshape(groups, -1).sum(axis=1) - sums) ** 2)),
        x_star,
    )


def noisy_smooth(rng: np.random.Generator, d: int) -> Landscape:
    """The smooth problem scored with noise, as a small dev set scores a merge: each score one draw (the runner's
    cache scores a candidate once), in the order asked."""
    clean = smooth(rng, d)
    noise = np.random.default_rng(rng.integers(2**62))
    return Landscape(lambda x: clean.score(x) + float(noise.normal(0.0, NOISE)), clean.optimum, clean.score)


PROBLEMS = (Problem("smooth", 10, 1, smooth), Problem("rugged", 10, 1, rugged), Problem("interacting", 4, 4, interacting),
            Problem("smooth+noise", 10, 1, noisy_smooth))


def genome_for(problem: Problem) -> Genome:
    groups = ("all",) if problem.groups == 1 else tuple(f"blocks{i}" for i in range(problem.groups))
    return Genome.build(
        "task_arithmetic", "file:///base", [(f"e{i}", f"file:///e{i}") for i in range(problem.experts)],
        groups, ["weight"], {"weight": (-1.0, 1.0)}, {},
    )


def uniform_seed(genome: Genome) -> np.ndarray:
    """The uniform mix, EvoGM's start, as CMA-ES's one seed row: its starting mean and a member of its first
    generation. CMA-ES adds each expert alone itself (search/initial.py), so with this seed its first generation holds
    EvoGM's known members (each expert alone, the uniform mix), and its own samples where EvoGM's host draws its own."""
    index = genome.param_index("weight")
    row = np.zeros((1, genome.dim))
    row[0, index] = 1.0 / index.shape[1]
    return genome.clip(row)


def search_spec(
    algorithm: str, budget: int, seed: int, overrides: dict | None = None, mode: str = "generational", parallelism: int = 1
) -> MergeSearchSpec:
    rounds = max(1, budget // (POPULATION * (ITERATIONS + 1))) if algorithm == "evogm" else 1
    generations = ITERATIONS + 1 if algorithm == "evogm" else -(-budget // POPULATION)
    return MergeSearchSpec.model_validate({
        "baseModel": {"uri": "file:///base"},
        "experts": [{"name": "e0", "uri": "file:///e0"}, {"name": "e1", "uri": "file:///e1"}],
        "search": {
            "algorithm": algorithm, "populationSize": POPULATION, "maxGenerations": generations, "rounds": rounds,
            "seed": seed, "mode": mode, "maxEvaluations": budget, **(overrides or {}),
        },
        "objectives": [{"task": "synthetic", "metric": "score"}],
        "evaluation": {"parallelism": parallelism},
    })


class MemoryHistory:
    def __init__(self) -> None:
        self._events: list[dict] = []

    def events(self) -> list[dict]:
        return list(self._events)

    def append(self, event: dict) -> None:
        self._events.append(event)


class InstantExecutor:
    """Scores each candidate at once: the benchmark counts evaluations, not time."""

    def __init__(self, genome: Genome, objective: Callable[[np.ndarray], float]):
        self.genome, self.objective = genome, objective
        self._done: list[EvalResult] = []

    def submit(self, candidate: str, recipe) -> None:
        self._done.append(EvalResult(candidate, {"synthetic/score": self.objective(self.genome.encode(recipe))}))

    def wait(self) -> list[EvalResult]:
        done, self._done = self._done, []
        return done

    @property
    def pending(self) -> int:
        return len(self._done)

    def close(self) -> None:
        self._done.clear()


def step_size(optimizer) -> float | None:
    """The σ an optimizer samples with now (CMA-ES, or the CMA-ES hosting EvoGM); None for the others."""
    if hasattr(optimizer, "step_sizes"):
        return float(optimizer.step_sizes[-1])
    cma = getattr(optimizer, "cma", None)
    return None if cma is None else float(cma._sigma)  # cmaes keeps σ private


def run(problem: Problem, variant: str, budget: int, seed: int) -> dict:
    """One search through the real runner: per evaluation the true gap of the best seen so far, per generation the
    spread of its candidates and the step size after it was told."""
    algorithm, overrides = VARIANTS[variant]
    genome = genome_for(problem)
    landscape = problem.build(np.random.default_rng([seed, 12345]), problem.dim)
    spec = search_spec(algorithm, budget, seed, overrides)
    seeds = uniform_seed(genome) if variant in SEEDED else None
    optimizers, steps = [], []

    def build():
        opt = make_optimizer(genome, spec.search, 1, seeds)
        tell = opt.tell

        def traced(vectors, fitness):
            tell(vectors, fitness)
            steps.append(step_size(opt))

        opt.tell = traced
        optimizers.append(opt)
        return opt

    runner = SearchRunner(spec, genome, build, InstantExecutor(genome, landscape), MemoryHistory())
    candidates = sorted(runner.run().candidates, key=lambda c: c.id)
    seen = np.array([c.fitness if c.fitness is not None else -np.inf for c in candidates])
    true = np.array([landscape.true(np.asarray(c.vector)) for c in candidates])
    leader = np.array([int(np.argmax(seen[: i + 1])) for i in range(len(seen))])
    generations = np.array([c.generation for c in candidates])
    spread = [float(np.std([c.vector for c in candidates if c.generation == g], axis=0).mean())
              for g in range(int(generations.max()) + 1)]
    return {"problem": problem.name, "variant": variant, "seed": seed, "budget": budget,
            "gap": (-true[leader]).tolist(), "seen": np.maximum.accumulate(seen).tolist(), "spread": spread,
            "steps": [s for s in steps if s is not None]}


# ---- the report ---------------------------------------------------------------------------------------


def _pm(values: np.ndarray) -> str:
    return f"{values.mean():.3f} ± {values.std():.3f}"


def paired(ours: np.ndarray, theirs: np.ndarray) -> tuple[int, int, int, float, float]:
    """(wins, ties, losses, median difference, two-sided Wilcoxon p) of gaps, lower is better; ties within 1e-9."""
    diff = theirs - ours  # > 0: ours is nearer the optimum
    wins, losses = int((diff > 1e-9).sum()), int((diff < -1e-9).sum())
    p = float(wilcoxon(ours, theirs).pvalue) if wins + losses else 1.0
    return wins, len(diff) - wins - losses, losses, float(np.median(diff)), p


def evaluations_to_reach(trace: np.ndarray, target: float) -> float:
    hits = np.flatnonzero(trace >= target)
    return float(hits[0] + 1) if len(hits) else np.inf


def _reached(by: dict, problem: str, seeds: int, budget: int) -> list[int]:
    """The seeds on which every optimizer but the released EvoGM has a run of at least `budget` evaluations."""
    return [s for s in range(seeds) if all((problem, v, s) in by and len(by[problem, v, s]["gap"]) >= budget
                                           for v in VARIANTS if v != "evogm-paper")]


def report(runs: list[dict], seeds: int, budgets: list[int], command: str, cpu: float) -> tuple[str, str]:
    """The full report (docs/benchmarks.md) and its verdicts in short (the README's optimizer summary). Each budget is
    read on the seeds whose runs reached it, so a longer budget may pair fewer seeds (each table says how many)."""
    by = {(r["problem"], r["variant"], r["seed"]): r for r in runs}
    long = RANDOM_FACTOR * budgets[0]
    lines = [
        f"### EvoGM against CMA-ES, the GA and random search (paired seeds, populationSize {POPULATION})",
        "",
        f"`{command}` ({cpu / 60:.0f} min of CPU). *gap* = optimum − the true score of the best candidate seen (0 is "
        "the optimum; lower is better), mean ± sd over seeds. *W/T/L*: seeds on which the default EvoGM's gap is lower / "
        "equal / higher than the peer's; *Δ*: the median of the peer's gap minus EvoGM's (> 0: EvoGM ahead); *p*: "
        f"two-sided Wilcoxon signed-rank test over the paired seeds. *cmaes\\**: CMA-ES at the initial step size of "
        f"{{1/10, 1/6, 1/4}} with the best mean gap on that problem and budget; *{EVOGM_SIGMA}*: CMA-ES at the first step of "
        f"EvoGM's host (the control: what the step alone gives). Random search runs {long} evaluations; the others' "
        f"evaluations to its best are counted within their first {budgets[0]}.",
        "",
    ]
    verdicts = []
    for problem in PROBLEMS:
        reached = {b: _reached(by, problem.name, seeds, b) for b in budgets}
        have = reached[budgets[0]]
        if not have:
            continue
        counts = ", ".join(f"{len(reached[b])} at {b}" for b in budgets)
        lines += [f"**{problem.name}** — d = {problem.dim}, {len(have)} paired seeds ({counts}); random "
                  f"search's best of {long}: gap "
                  f"{_pm(np.array([by[problem.name, 'random', s]['gap'][-1] for s in have]))}", ""]
        # the released EvoGM may run on fewer seeds and budgets: it is paired where it ran
        on = {(v, b): [s for s in reached[b] if v != "evogm-paper" or
                       ((problem.name, v, s) in by and len(by[problem.name, v, s]["gap"]) >= b)]
              for v in VARIANTS for b in budgets}
        gaps = {v: {b: np.array([by[problem.name, v, s]["gap"][b - 1] for s in on[v, b]]) for b in budgets if on[v, b]}
                for v in VARIANTS}
        targets = [by[problem.name, "random", s]["seen"][-1] for s in have]
        head = "| optimizer | " + " | ".join(f"gap at {b}" for b in budgets) + f" | evaluations to random's best of {long} (median; seeds reaching it) |"
        lines += [head, "|---|" + "---:|" * (len(budgets) + 1)]
        for v in VARIANTS:
            runs_of = [(s, t) for s, t in zip(have, targets) if (problem.name, v, s) in by]
            cap = long if v == "random" else budgets[0]  # each optimizer within its budget: random search within its own
            reach = np.array([evaluations_to_reach(np.array(by[problem.name, v, s]["seen"][:cap]), t) for s, t in runs_of])
            median = float(np.median(reach)) if len(reach) else np.inf
            cells = [(_pm(gaps[v][b]) if b in gaps[v] else "—") for b in budgets]
            shown = f"{median:g} ({100 * median / long:.1f} %)" if np.isfinite(median) else "never"
            lines.append(f"| {v} | " + " | ".join(cells) + f" | {shown}; {int(np.isfinite(reach).sum())}/{len(reach)} |")
        lines += ["", "| default EvoGM vs | budget | seeds | W/T/L | Δ (median) | p |", "|---|---:|---:|---:|---:|---:|"]
        for b in budgets:
            if b not in gaps["evogm"]:
                continue
            best_cma = min(CMA_SIGMAS, key=lambda v: gaps[v][b].mean() if b in gaps[v] else np.inf)
            for peer in PEERS:
                name = best_cma if peer == "cmaes*" else peer
                if b not in gaps[name]:
                    continue
                ours = gaps["evogm"][b][[reached[b].index(s) for s in on[name, b]]]
                w, t, l, delta, p = paired(ours, gaps[name][b])
                label = f"cmaes* ({name.removeprefix('cmaes').strip() or 'σ0=1/6'})" if peer == "cmaes*" else peer
                lines.append(f"| {label} | {b} | {len(ours)} | {w}/{t}/{l} | {delta:+.3f} | {p:.2g} |")
                if peer in ("cmaes*", EVOGM_SIGMA, "ga"):
                    verdicts.append((problem.name, b, peer, len(ours), w, t, l, delta, p))
        lines.append("")
    lines += [f"**Traces** (mean over the paired seeds, the first {budgets[0]} evaluations): *spread* = mean per-coefficient sd of each "
              "generation's candidates; *σ* = the step size after each generation was told (EvoGM: of its host CMA-ES, "
              "in the first round's coordinates; CMA-ES: in the unit box, half the width of [-1, 1]).", ""]
    generations = budgets[0] // POPULATION
    lines += ["| problem | optimizer | measure | " + " | ".join(f"g{g}" for g in range(generations)) + " |",
              "|---|---|---|" + "---:|" * generations]
    for problem in PROBLEMS:
        have = _reached(by, problem.name, seeds, budgets[0])
        for v in TRACED if have else ():
            for measure in ("spread", "steps"):
                series = [by[problem.name, v, s][measure][:generations] for s in have if (problem.name, v, s) in by]
                if not series or min(map(len, series)) < generations:
                    continue
                mean = np.mean(series, axis=0)
                lines.append(f"| {problem.name} | {v} | {'σ' if measure == 'steps' else measure} | "
                             + " | ".join(f"{x:.2f}" for x in mean) + " |")
    lines += ["", f"**Targets** (the default EvoGM beats CMA-ES at its best σ0 and the GA at {budgets[0]} evaluations, p < 0.05):", ""]
    for problem, b, peer, n, w, t, l, delta, p in verdicts:
        if b == budgets[0] and peer != EVOGM_SIGMA:
            met = delta > 0 and p < 0.05
            lines.append(f"- {problem}, vs {peer}: {'✅' if met else '❌'} {w} wins / {l} losses, Δ {delta:+.3f}, p = {p:.2g}")
    return "\n".join(lines).rstrip("\n") + "\n", summary(verdicts, budgets)


def verdict(w: int, t: int, l: int, delta: float, p: float) -> str:
    """A paired comparison in short: ahead (Δ > 0, p < 0.05), behind or level, with W/T/L and p."""
    word = "tie" if p >= 0.05 else ("**win**" if delta > 0 else "**loss**")
    return f"{word} {w}/{t}/{l}, p = {p:.2g}"


def summary(verdicts: list[tuple], budgets: list[int]) -> str:
    """Per budget and problem, the default EvoGM against CMA-ES at its best σ0 and against the GA: W/T/L and p, and
    whether it is ahead, behind or level — the README's optimizer section."""
    problems = list(dict.fromkeys(v[0] for v in verdicts))
    lines = ["| default EvoGM vs | budget | seeds | " + " | ".join(problems) + " |",
             "|---|---:|---:|" + "---|" * len(problems)]
    for peer, label in (("cmaes*", "CMA-ES at its best σ0"), ("ga", "the GA"), (EVOGM_SIGMA, "CMA-ES at EvoGM's σ0")):
        for b in budgets:
            cells = {v[0]: v for v in verdicts if v[1] == b and v[2] == peer}
            if not cells:
                continue
            seeds = sorted({v[3] for v in cells.values()})
            lines.append(f"| {label} | {b} | {'–'.join(map(str, (seeds[0], seeds[-1]))) if len(seeds) > 1 else seeds[0]} | "
                         + " | ".join(verdict(*cells[p][4:]) if p in cells else "—" for p in problems) + " |")
    return "\n".join(lines) + "\n"


def _longest(done: list[dict], random_budget: int) -> dict[tuple[str, str, int], dict]:
    """Per (problem, optimizer, seed) its longest run (a shorter budget is its prefix); random search at its budget."""
    longest: dict[tuple[str, str, int], dict] = {}
    for r in done:
        key = (r["problem"], r["variant"], r["seed"])
        if (r["variant"] != "random" or r["budget"] == random_budget) and r["budget"] > longest.get(key, {"budget": 0})["budget"]:
            longest[key] = r
    return longest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=tuple(VARIANTS),
                        help="Optimizers run (the report pairs the others with EvoGM on the seeds where each ran).")
    parser.add_argument("--first-seed", type=int, default=0, help="Run seeds from here (split a long run over processes).")
    parser.add_argument("--budgets", type=int, nargs="+", default=[160, 320, 640],
                        help="Equal budgets compared; each run spends the largest (random search 10× the smallest).")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/evomerge-optimizers.jsonl"),
                        help="Finished runs, one JSON line each; kept so an interrupted benchmark resumes.")
    parser.add_argument("--report-only", action="store_true", help="Write the report from the runs done so far.")
    parser.add_argument("--markdown-out", type=Path, help="Also write the report here (benchmarks/results/optimizers.md feeds docs/benchmarks.md).")
    args = parser.parse_args()
    budgets = sorted(args.budgets)
    if any(b % POPULATION for b in budgets):
        parser.error(f"--budgets must be multiples of populationSize {POPULATION}, got {budgets}")
    done = [json.loads(line) for line in args.runs.read_text().splitlines()] if args.runs.exists() else []
    longest = _longest(done, RANDOM_FACTOR * budgets[0])
    cpu = sum(r.get("cpu", 0.0) for r in done)
    for seed in range(args.first_seed, args.first_seed if args.report_only else args.seeds):
        for problem in PROBLEMS:
            for variant in args.variants:
                budget = RANDOM_FACTOR * budgets[0] if variant == "random" else budgets[-1]
                if (problem.name, variant, seed) in longest and longest[problem.name, variant, seed]["budget"] >= budget:
                    continue  # a longer run holds this one as its prefix
                start = time.process_time()
                result = run(problem, variant, budget, seed)
                result["cpu"] = time.process_time() - start
                cpu += result["cpu"]
                longest[problem.name, variant, seed] = result
                with args.runs.open("a") as out:
                    out.write(json.dumps(result) + "\n")
                print(f"{problem.name} {variant} seed {seed}: gap {result['gap'][budgets[0] - 1]:.3f} at {budgets[0]} "
                      f"({result['cpu']:.0f} s)", file=sys.stderr, flush=True)
    runs = list(longest.values())
    seeds = 1 + max((r["seed"] for r in runs), default=-1)  # the report pairs the seeds below this that every run finished
    command = shlex.join([".venv/bin/python", "benchmarks/optimizers.py", *sys.argv[1:]])
    text, short = report(runs, seeds, budgets, command, cpu)
    print(text, end="")
    if args.markdown_out:
        args.markdown_out.write_text(text)
        args.markdown_out.with_name(args.markdown_out.stem + "_summary.md").write_text(short)


if __name__ == "__main__":
    sys.exit(main())
