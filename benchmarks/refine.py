"""What `search.refine` gains at an equal budget, on the synthetic landscapes of benchmarks/optimizers.py.

Each optimizer runs twice per seed through the real SearchRunner at its spec defaults (populationSize 20, 160
evaluations, evaluation.parallelism 1): once with the whole budget for the search, once with `search.refine:
{evaluations: N}`, where the search proper stops N earlier and a (1+1)-ES spends the rest around its best. The two runs
of a seed share the landscape and the optimizer's draws, so their difference is the refinement's alone (paired). The
report shows the gap to the optimum (lower is better) of both, the paired difference, on how many seeds the refined
run ends nearer, and the Wilcoxon signed-rank p-value.

    .venv/bin/python -P benchmarks/refine.py --optimizers ga,cmaes --markdown-out benchmarks/results/refine.md
        # 10 seeds, seconds of CPU (EvoGM's generator training makes --optimizers ga,cmaes,evogm take many minutes)
    .venv/bin/python -P benchmarks/refine.py --seeds 3 --optimizers ga
"""

from __future__ import annotations

import argparse
import runpy
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

_optimizers = runpy.run_path(str(Path(__file__).with_name("optimizers.py")))  # by path: see async_eval._sibling
PROBLEMS, search_spec, genome_for = _optimizers["PROBLEMS"], _optimizers["search_spec"], _optimizers["genome_for"]
InstantExecutor, MemoryHistory = _optimizers["InstantExecutor"], _optimizers["MemoryHistory"]
BUDGET = 160


def gap(problem, algorithm: str, seed: int, refine: int) -> float:
    """Optimum − true score of one search's best (the landscapes peak at 0)."""
    from evomerge.runner.loop import SearchRunner
    from evomerge.search.optimizer import make_optimizer

    genome = genome_for(problem)
    landscape = problem.build(np.random.default_rng([seed, 12345]), problem.dim)
    spec = search_spec(algorithm, BUDGET, seed, {"refine": {"evaluations": refine}} if refine else {})
    runner = SearchRunner(spec, genome, lambda: make_optimizer(genome, spec.search), InstantExecutor(genome, landscape.score),
                          MemoryHistory())
    outcome = runner.run()
    assert len(outcome.candidates) == BUDGET
    truth = landscape.truth or landscape.score  # a noisy problem's best is the one seen scoring highest, read noise-free
    return -float(truth(np.array(outcome.best.vector)))


def report(rows: list[tuple[str, str, np.ndarray, np.ndarray]], seeds: int, refine: int, command: str, cpu: float) -> str:
    lines = [
        f"### Local refinement at an equal budget ({seeds} paired seeds)",
        "",
        f"`{command}` ({cpu:.0f} s of CPU). The problems of benchmarks/optimizers.py, each optimizer at its defaults "
        f"({BUDGET} evaluations); *refined*: `search.refine: {{evaluations: {refine}}}`, so the search proper stops "
        f"{refine} evaluations earlier and a (1+1)-ES spends them around its best. *gap* = optimum − the true score of "
        "the best candidate (on smooth+noise, the one seen scoring highest; lower is better), mean ± sd over seeds; *Δ* = refined − plain per seed (negative: the refinement helped).",
        "",
        "| problem | optimizer | gap, plain | gap, refined | Δ (mean) | refined nearer | Wilcoxon p |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for problem, algorithm, plain, refined in rows:
        delta = refined - plain
        p = wilcoxon(refined, plain).pvalue if np.any(delta != 0) else 1.0
        lines.append(f"| {problem} | {algorithm} | {plain.mean():.3f} ± {plain.std():.3f} | {refined.mean():.3f} ± "
                     f"{refined.std():.3f} | {delta.mean():+.3f} | {int((delta < 0).sum())}/{seeds} | {p:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--refine", type=int, default=20, help="refine.evaluations, out of the 160")
    parser.add_argument("--optimizers", default="ga,cmaes,evogm")
    parser.add_argument("--markdown-out", type=Path)
    args = parser.parse_args()
    start = time.process_time()
    rows = []
    for problem in PROBLEMS:
        for algorithm in args.optimizers.split(","):
            plain = np.array([gap(problem, algorithm, s, 0) for s in range(args.seeds)])
            refined = np.array([gap(problem, algorithm, s, args.refine) for s in range(args.seeds)])
            rows.append((problem.name, algorithm, plain, refined))
            print(f"{problem.name} {algorithm}: plain {plain.mean():.3f}, refined {refined.mean():.3f}", file=sys.stderr)
    command = ".venv/bin/python -P " + " ".join(shlex.quote(a) for a in ["benchmarks/refine.py", *sys.argv[1:]])
    text = report(rows, args.seeds, args.refine, command, time.process_time() - start)
    print(text)
    if args.markdown_out:
        args.markdown_out.parent.mkdir(parents=True, exist_ok=True)
        args.markdown_out.write_text(text)


if __name__ == "__main__":
    main()
