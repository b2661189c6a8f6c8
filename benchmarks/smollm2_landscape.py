"""The SmolLM2 world's merge landscape: base, each LoRA expert, uniform merges, a coarse grid of task-arithmetic
weights, and TIES / DARE-TIES at a few densities, scored through evomerge's own engine (lm-evaluation-harness on
the world's tasks, through one vLLM CPU server as `evomerge demo --world smollm2` scores them), and printed as a
markdown table. The base, each expert and the uniform merges are scored on the held-out splits too; `--json-out`
keeps every row for benchmarks/smollm2_targets.py, which compares the evolved merges with them, and is written after
every row: a rerun with the same file scores only the rows it lacks (an interrupted landscape resumes).

    python benchmarks/smollm2_landscape.py --seeds 0 [--levels 0.5 1] [--densities 0.3 0.6] [--markdown-out FILE]
        [--json-out FILE]

*multi* is the mean exact match over the world's skills; *general* is the capitals check (accuracy), which the
base already passes; the distractor's task is scored too, a column no objective asks for. Merges are those of
`evomerge demo --world smollm2`: the LoRA experts' task vectors over the converted base, θ = base + Σ wᵢ τᵢ (TIES and
DARE-TIES trim and elect signs first, with mergekit's defaults).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import time
from pathlib import Path

from evomerge.cli.demo import demo_search
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.runner.local import evaluation_worker, make_engine
from evomerge.spec import Objective
from evomerge.zoo import Zoo
from evomerge.zoo.smollm2.build import build_smollm2

# The targets (#19): the evolved (here: best grid) merge against the references, in points.
BEST_OVER_EXPERT = 15.0
BEST_OVER_UNIFORM = 10.0
GENERAL_DROP = 2.0
HELDOUT_GAP = 3.0


def recipe(zoo: Zoo, weights: dict[str, float], method: str = "task_arithmetic",
           density: float | None = None) -> MergeRecipe:
    def params(name: str) -> dict[str, dict[str, float]]:
        p = {"weight": {"all": weights.get(name, 0.0)}}
        if density is not None:
            p["density"] = {"all": density}
        return p

    experts = tuple(ExpertWeights(n, str(path), params(n)) for n, path in sorted(zoo.lora_adapters.items()))
    options = {"normalize": False} if method == "task_arithmetic" else {}
    return MergeRecipe(method, str(zoo.base), experts, ("all",), options)


class Scorer:
    """The demo's objectives (its skills and general check) and the distractors' tasks, which no objective asks for,
    on either split over one vLLM server (`worker`); scores in % by world key."""

    def __init__(self, zoo: Zoo, seed: int, worker):
        spec = demo_search(zoo, "evogm", seed, 1, 2, engine="vllm", world="smollm2").spec
        self.keys = zoo.skills + zoo.distractors + zoo.checks
        self.skills = zoo.skills
        self.engines = {}
        for split in ("search", "heldout"):
            objectives = [Objective.model_validate(zoo.objective(k, split)) for k in self.keys]
            self.engines[split] = (make_engine(spec, objectives, worker=worker), objectives)
        self.evaluations = 0

    def score(self, r: MergeRecipe, split: str = "search") -> dict[str, float]:
        engine, objectives = self.engines[split]
        raw = engine.score(r)
        self.evaluations += 1
        scores = {k: 100.0 * raw[o.key] for k, o in zip(self.keys, objectives)}
        scores["multi"] = sum(scores[s] for s in self.skills) / len(self.skills)
        return scores


def landscape(seed: int, levels: tuple[float, ...], densities: tuple[float, ...], log,
              done: dict[str, dict[str, float]], save) -> tuple[list, dict]:
    """The seed's rows, reusing those in `done` (by label); `save(rows)` keeps the rows so far after each one."""
    started = time.monotonic()
    zoo = build_smollm2(seed, progress=log)
    built = time.monotonic()
    spec = demo_search(zoo, "evogm", seed, 1, 2, engine="vllm", world="smollm2").spec
    with evaluation_worker(spec, Path(f"/tmp/evomerge-smollm2-landscape-{seed}")) as worker:
        rows, evaluations, best = _score_landscape(zoo, Scorer(zoo, seed, worker), levels, densities, seed, log,
                                                   done, save)
    info = {"seed": seed, "evaluations": evaluations, "build_s": built - started,
            "score_s": time.monotonic() - built, "best": best}
    return rows, info


def _score_landscape(zoo: Zoo, scorer: Scorer, levels: tuple[float, ...], densities: tuple[float, ...], seed: int,
                     log, done: dict[str, dict[str, float]], save) -> tuple[list, int, str]:
    """The landscape's rows in order, the lm-eval runs it took, and the best grid merge's label."""
    names = zoo.skills + zoo.distractors
    rows: list[tuple[str, dict[str, float]]] = []

    def add(label: str, r: MergeRecipe, heldout: bool = False) -> dict[str, float]:
        scores = done.get(label) or scorer.score(r)
        rows.append((label, scores))
        log(f"seed {seed}: {label}: multi {scores['multi']:.1f} general {scores['general']:.1f}")
        if heldout:
            held = f"{label} (held-out)"
            rows.append((held, done.get(held) or scorer.score(r, "heldout")))
        save(rows)
        return scores

    add("base", recipe(zoo, {}), heldout=True)
    for name in names:
        add(f"expert `{name}`", recipe(zoo, {name: 1.0}), heldout=True)
    add(f"uniform, all {len(names)} (w = 1/{len(names)})", recipe(zoo, {n: 1 / len(names) for n in names}), heldout=True)
    add(f"uniform, skills (w = 1/{len(zoo.skills)})", recipe(zoo, {n: 1 / len(zoo.skills) for n in zoo.skills}),
        heldout=True)
    best, best_weights = -1.0, {}
    for point in itertools.product(*([levels] * len(zoo.skills))):
        weights = dict(zip(zoo.skills, point))
        label = "task arithmetic " + ", ".join(f"{n} {w:g}" for n, w in weights.items())
        scores = add(label, recipe(zoo, weights))
        if scores["multi"] > best:
            best, best_weights = scores["multi"], weights
    for method in ("ties", "dare_ties"):
        for density in densities:
            add(f"{method}, skills w = 1, density {density:g}",
                recipe(zoo, {n: 1.0 for n in zoo.skills}, method, density))
    best_label = "best grid merge: " + ", ".join(f"{n} {w:g}" for n, w in best_weights.items())
    add(best_label, recipe(zoo, best_weights), heldout=True)
    return rows, scorer.evaluations, best_label


def render(results: list[tuple[list, dict]], command: str) -> str:
    lines = ["### SmolLM2 landscape (LoRA experts of SmolLM2-135M-Instruct)", "",
             "Exact match in % per skill, then per distractor (a skill no objective asks for: does its expert "
             "learn it, and does it survive a merge), on the search split unless marked held-out; *multi*: the "
             "skills' mean; *general*: the capitals check (accuracy in %).", ""]
    for rows, info in results:
        cols = [c for c in rows[0][1] if c not in ("multi", "general")] + ["multi", "general"]  # skills, distractors
        lines += [f"**seed {info['seed']}** ({info['evaluations']} lm-eval runs in {info['score_s']:.0f} s; world "
                  f"build {info['build_s']:.0f} s, 0 if cached)", "",
                  "| model | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        lines += [f"| {label} | " + " | ".join(f"{s[c]:.1f}" if c in s else "–" for c in cols) + " |"
                  for label, s in rows]
        table = dict(rows)
        best = table[info["best"]]
        held = table[info["best"] + " (held-out)"]
        single = max(s["multi"] for label, s in rows if label.startswith("expert") and not label.endswith("(held-out)"))
        uniform = max(s["multi"] for label, s in rows if label.startswith("uniform") and not label.endswith("(held-out)"))
        lines += ["", "| criterion | value | target |", "|---|---:|---|",
                  f"| best grid − best single expert (multi) | {best['multi'] - single:.1f} | ≥ {BEST_OVER_EXPERT:g} |",
                  f"| best grid − best uniform (multi) | {best['multi'] - uniform:.1f} | ≥ {BEST_OVER_UNIFORM:g} |",
                  f"| base − best grid (general) | {table['base']['general'] - best['general']:.1f} | ≤ {GENERAL_DROP:g} |",
                  f"| held-out − search gap (multi) | {abs(held['multi'] - best['multi']):.1f} | ≤ {HELDOUT_GAP:g} |",
                  ""]
    lines += [f"Command: `{command}`", ""]
    return "\n".join(lines)


def quiet_lm_eval() -> None:
    """No progress bars or warnings per lm-eval run, and no hub look-ups (the world's tasks are local)."""
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    for quiet in ("TQDM_DISABLE", "HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(quiet, "1")


def publish(text: str, markdown_out: str | Path | None) -> None:
    """Print the benchmark's markdown, and write it where asked (benchmarks/results/, for hack/update_readme.py)."""
    print(text)
    if markdown_out:
        Path(markdown_out).write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--levels", type=float, nargs="+", default=[0.5, 1.0], help="weights tried for each skill")
    parser.add_argument("--densities", type=float, nargs="+", default=[0.3, 0.6], help="TIES / DARE-TIES densities")
    parser.add_argument("--markdown-out", default=None)
    parser.add_argument("--json-out", default=None, help="every row of every seed, for benchmarks/smollm2_targets.py")
    args = parser.parse_args(argv)
    quiet_lm_eval()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    store = Path(args.json_out) if args.json_out else None
    kept = {r["info"]["seed"]: r for r in json.loads(store.read_text())} if store and store.exists() else {}

    def saver(seed: int):
        def save(rows: list) -> None:
            kept[seed] = {"info": {"seed": seed}, "rows": rows}
            if store:
                store.write_text(json.dumps(list(kept.values()), indent=1))
        return save

    results = []
    for seed in args.seeds:
        done = dict(kept.get(seed, {}).get("rows", []))
        rows, info = landscape(seed, tuple(args.levels), tuple(args.densities), log, done, saver(seed))
        results.append((rows, info))
        kept[seed] = {"info": info, "rows": rows}
    command = "python benchmarks/smollm2_landscape.py " + " ".join(sys.argv[1:] if argv is None else argv)
    publish(render(results, command.strip()), args.markdown_out)
    if store:
        store.write_text(json.dumps(list(kept.values()), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
