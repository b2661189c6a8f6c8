"""The SmolLM2 world's targets (#19) and the optimizers on it: `evomerge demo --world smollm2`'s search (LoRA experts,
task arithmetic, one weight per expert in the EvoGM release's box [-1, 1], the general check as one more objective),
run by EvoGM (the default), CMA-ES and the GA at one budget on the same seeds, each through one vLLM CPU server.

    python benchmarks/smollm2_landscape.py --json-out benchmarks/results/smollm2_landscape.json  # the references
    python benchmarks/smollm2_targets.py --landscape benchmarks/results/smollm2_landscape.json \\
        --markdown-out benchmarks/results/smollm2_targets.md [--part 0/2]

Every search keeps its run directory under --work, so an interrupted benchmark resumes each by replay; `--part i/n`
runs every n-th job from the i-th (two processes, one server each) and `--report-only` writes the report from the
finished runs. The targets compare each EvoGM run's best merge (by the search's fitness) with the landscape's rows of
the same world: the best single expert and the uniform merge on the held-out multi-skill score (the mean exact match
over the skills), the base's held-out general check, and the run's own search score.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from evomerge.catalogue.contracts import SUMMARY_FILE
from evomerge.cli.demo import demo_search
from evomerge.spec import MergeSearch
from evomerge.zoo.smollm2.build import build_smollm2
from evomerge.zoo.worlds import SMOLLM2

_optimizers = runpy.run_path(str(Path(__file__).with_name("optimizers.py")))  # by path: see async_eval._sibling
VARIANTS = _optimizers["VARIANTS"]  # the optimizer settings every optimizer benchmark uses
_landscape = runpy.run_path(str(Path(__file__).with_name("smollm2_landscape.py")))
BEST_OVER_EXPERT, BEST_OVER_UNIFORM = _landscape["BEST_OVER_EXPERT"], _landscape["BEST_OVER_UNIFORM"]
GENERAL_DROP, HELDOUT_GAP = _landscape["GENERAL_DROP"], _landscape["HELDOUT_GAP"]
OPTIMIZERS = ("evogm", "cmaes", "ga")  # evogm first: its runs are the target runs
HELD_OUT = " (held-out)"


def search_for(variant: str, seed: int, population: int, generations: int) -> MergeSearch:
    """The demo's search on the world, engine vllm, with the optimizer settings of benchmarks/optimizers.py."""
    algorithm, overrides = VARIANTS[variant]
    data = demo_search(build_smollm2(0), algorithm, seed, generations, population, "vllm", SMOLLM2).model_dump(
        mode="json", by_alias=True, exclude_none=True)
    data["metadata"]["name"] = f"smollm2-{variant}-{seed}"
    data["spec"]["search"].update({"maxEvaluations": population * generations, **overrides})
    return MergeSearch.model_validate(data)


def jobs(seeds: int) -> list[tuple[str, int]]:
    """EvoGM on every seed first (the targets), then the peers seed by seed (the comparison)."""
    return [("evogm", s) for s in range(seeds)] + [(v, s) for s in range(seeds) for v in OPTIMIZERS[1:]]


def run_jobs(todo: list[tuple[str, int]], population: int, generations: int, work: Path) -> None:
    """Each job through the local runner, all over one vLLM server (the world's base and experts are the same)."""
    from evomerge.runner.local import evaluation_worker, run_local

    first = search_for(*todo[0], population, generations)
    with evaluation_worker(first.spec, work / f"server-{os.getpid()}") as worker:
        for variant, seed in todo:
            started = time.monotonic()
            result = run_local(search_for(variant, seed, population, generations), work / f"{variant}-s{seed}",
                               export=False, worker=worker)
            print(f"{variant} seed {seed}: fitness {result.outcome.best.fitness:.3f}, held-out {result.held_out} "
                  f"({time.monotonic() - started:.0f} s)", flush=True)


def scores_by_key(scores: dict[str, float], objectives, skills: tuple[str, ...], keys: tuple[str, ...]) -> dict[str, float]:
    """A run's scores by objective key as % by world key (the demo lists one objective per key, in order), with
    their *multi* mean over the skills."""
    values = {k: 100.0 * scores[o.key] for k, o in zip(keys, objectives, strict=True)}
    values["multi"] = sum(values[s] for s in skills) / len(skills)
    return values


def finished(work: Path, population: int, generations: int, seeds: int) -> dict[tuple[str, int], dict]:
    """(variant, seed) → {search, held-out, evaluations} for every finished run under `work`."""
    zoo = build_smollm2(0)
    keys = zoo.skills + zoo.checks
    out = {}
    for variant, seed in jobs(seeds):
        path = work / f"{variant}-s{seed}" / SUMMARY_FILE
        if not path.exists():
            continue
        summary = json.loads(path.read_text())
        spec = search_for(variant, seed, population, generations).spec
        out[variant, seed] = {"search": scores_by_key(summary["best"]["scores"], spec.objectives, zoo.skills, keys),
                              "heldout": scores_by_key(summary["heldOut"], spec.held_out, zoo.skills, keys),
                              "evaluations": summary["evaluations"]}
    return out


def references(landscape: Path) -> dict[str, dict[str, float]]:
    """The landscape's rows of world seed 0: base, experts, uniform merges (search, and held-out ones)."""
    return {label: scores for label, scores in json.loads(landscape.read_text())[0]["rows"]}


def _pm(values: list[float]) -> str:
    return f"{np.mean(values):.1f} ± {np.std(values):.1f}"


def report(runs: dict[tuple[str, int], dict], refs: dict[str, dict[str, float]], budget: int, command: str) -> str:
    held = {label[:-len(HELD_OUT)]: s for label, s in refs.items() if label.endswith(HELD_OUT)}
    expert_label, expert = max(((l, s) for l, s in held.items() if l.startswith("expert")), key=lambda t: t[1]["multi"])
    # The demo's uniform merge (1/N over every expert, the distractor included), as its comparison table shows it.
    uniform_label, uniform = next((l, s) for l, s in held.items() if l.startswith("uniform, all"))
    skills_only = next(s for l, s in held.items() if l.startswith("uniform, skills"))
    base = held["base"]
    lines = [
        "### SmolLM2 world: the evolved merge against the targets, and the optimizers",
        "",
        f"`evomerge demo --world smollm2`'s search (LoRA experts of SmolLM2-135M-Instruct, distractor included; task "
        f"arithmetic, one weight per expert in [−1, 1]; objectives: the three skills and the general check), {budget} "
        "evaluations per run through one vLLM CPU server. *multi*: mean exact match over the skills in %, of the run's "
        "best merge (by its search fitness); *general*: the capitals check. References, held-out (from the landscape): "
        f"the best single {expert_label} {expert['multi']:.1f}, the demo's uniform merge ({uniform_label}) "
        f"{uniform['multi']:.1f} (over the skills only: {skills_only['multi']:.1f}), base general "
        f"{base['general']:.1f}.",
        "",
        "| EvoGM seed | search multi | held-out multi | − best expert (≥ "
        f"{BEST_OVER_EXPERT:g}) | − uniform (≥ {BEST_OVER_UNIFORM:g}) | held-out general | base − it (≤ {GENERAL_DROP:g}) "
        f"| \\|held-out − search\\| (≤ {HELDOUT_GAP:g}) | all met |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (variant, seed), run in sorted(runs.items()):
        if variant != "evogm":
            continue
        s, h = run["search"], run["heldout"]
        checks = (h["multi"] - expert["multi"] >= BEST_OVER_EXPERT, h["multi"] - uniform["multi"] >= BEST_OVER_UNIFORM,
                  base["general"] - h["general"] <= GENERAL_DROP, abs(h["multi"] - s["multi"]) <= HELDOUT_GAP)
        lines.append(f"| {seed} | {s['multi']:.1f} | {h['multi']:.1f} | {h['multi'] - expert['multi']:+.1f} | "
                     f"{h['multi'] - uniform['multi']:+.1f} | {h['general']:.1f} | {base['general'] - h['general']:+.1f} "
                     f"| {abs(h['multi'] - s['multi']):.1f} | {'yes' if all(checks) else 'no'} |")
    seeds = sorted({s for v, s in runs if all((o, s) in runs for o in OPTIMIZERS)})
    lines += ["", f"Optimizers at {budget} evaluations on the seeds all three finished (seeds "
              f"{', '.join(map(str, seeds)) or 'none yet'}); mean ± sd over seeds, per seed in brackets.", "",
              "| optimizer | search multi | held-out multi | held-out general |", "|---|---:|---:|---:|"]
    for variant in OPTIMIZERS:
        cells = []
        for split, key in (("search", "multi"), ("heldout", "multi"), ("heldout", "general")):
            values = [runs[variant, s][split][key] for s in seeds]
            cells.append(f"{_pm(values)} ({', '.join(f'{v:.1f}' for v in values)})" if values else "—")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--generations", type=int, default=4, help="EvoGM's default: 3 iterations after the first")
    parser.add_argument("--landscape", type=Path, required=True, help="smollm2_landscape.py's --json-out")
    parser.add_argument("--work", type=Path, default=Path("/tmp/evomerge-smollm2-targets"))
    parser.add_argument("--part", default="0/1", help="i/n: run every n-th job from the i-th")
    parser.add_argument("--report-only", action="store_true", help="start no search; report the finished ones")
    parser.add_argument("--markdown-out", type=Path)
    args = parser.parse_args(argv)
    _landscape["quiet_lm_eval"]()
    index, parts = (int(x) for x in args.part.split("/"))
    todo = jobs(args.seeds)[index::parts]
    if todo and not args.report_only:
        args.work.mkdir(parents=True, exist_ok=True)
        run_jobs(todo, args.population, args.generations, args.work)
    runs = finished(args.work, args.population, args.generations, args.seeds)
    command = "python benchmarks/smollm2_targets.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    _landscape["publish"](report(runs, references(args.landscape), args.population * args.generations, command.strip()),
                          args.markdown_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
