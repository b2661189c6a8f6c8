"""Is the zoo's merge landscape real? Score base, experts, uniform merges and the best merge of a
coarse weight grid through lm-evaluation-harness, on several zoo seeds, and print a markdown table.

    python benchmarks/zoo_landscape.py --size small --seeds 0 1 2 [--markdown-out FILE]

Merging here is plain task arithmetic on state dicts, θ = base + Σ wᵢ (θᵢ − base).
The multi-skill score is the mean exact match over the zoo's objective skills (its lm-eval group).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from evomerge.zoo import Zoo, build_zoo

# Criteria the zoo is designed to meet (issue #3).
EXPERT_MIN = 60.0
BEST_OVER_EXPERT = 15.0
BEST_OVER_UNIFORM = 10.0
HELDOUT_GAP = 3.0


def task_arithmetic(base: dict[str, torch.Tensor], experts: dict[str, dict[str, torch.Tensor]],
                    weights: dict[str, float]) -> dict[str, torch.Tensor]:
    """θ = base + Σ wᵢ (θᵢ − base)."""
    merged = {}
    for name, b in base.items():
        t = b.clone()
        for expert, w in weights.items():
            if w:
                t += w * (experts[expert][name] - b)
        merged[name] = t
    return merged


class LmEvalScorer:
    """One resident model and lm-eval task dicts built once, reused for every candidate."""

    def __init__(self, zoo: Zoo, batch_size: int = 512):
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.zoo = zoo
        self.model = AutoModelForCausalLM.from_pretrained(zoo.base, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(zoo.base)
        self.lm = HFLM(pretrained=self.model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")
        manager = TaskManager(include_path=str(zoo.tasks_dir), include_defaults=False)
        self.task_dicts = {}
        for split, tasks in (("search", zoo.search_tasks), ("heldout", zoo.heldout_tasks)):
            lean = [tasks["composite"], tasks["pairs"]]
            self.task_dicts[split] = manager.load(lean)
            self.task_dicts[split + "+distractors"] = manager.load(
                lean + [tasks[d] for d in zoo.distractors])
        self.evaluations = 0

    def score(self, state: dict[str, torch.Tensor], split: str = "search",
              distractors: bool = False) -> dict[str, float]:
        """Exact match in % per skill (and distractor), for pairs, and ``multi``: the composite
        group's score, the mean over the objective skills."""
        from lm_eval.evaluator import evaluate

        self.model.load_state_dict(state)
        task_dict = self.task_dicts[split + ("+distractors" if distractors else "")]
        results = evaluate(lm=self.lm, task_dict=task_dict, bootstrap_iters=0,
                           log_samples=False)["results"]
        self.evaluations += 1
        tasks = self.zoo.search_tasks if split == "search" else self.zoo.heldout_tasks
        metric = f"{self.zoo.metric},none"
        keys = [*self.zoo.skills, "pairs", *(self.zoo.distractors if distractors else ())]
        scores = {k: 100.0 * results[tasks[k]][metric] for k in keys}
        scores["multi"] = 100.0 * results[tasks["composite"]][metric]
        return scores


@dataclass
class SeedResult:
    seed: int
    rows: dict[str, dict[str, float]] = field(default_factory=dict)  # row label -> scores
    best_weights: dict[str, float] = field(default_factory=dict)
    best_heldout: dict[str, float] = field(default_factory=dict)
    grid_size: int = 0
    evaluations: int = 0
    build_s: float = 0.0
    score_s: float = 0.0


def load_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def run_seed(size: str, seed: int, levels: tuple[float, ...], distractor_levels: tuple[float, ...],
             cache_dir: Path | None, log) -> SeedResult:
    started = time.monotonic()
    zoo = build_zoo(size, seed, cache_dir=cache_dir, progress=log)
    built = time.monotonic()
    scorer = LmEvalScorer(zoo)
    base = load_state(zoo.base)
    experts = {name: load_state(path) for name, path in zoo.experts.items()}
    names = list(zoo.skills) + list(zoo.distractors)
    result = SeedResult(seed)

    result.rows["base"] = scorer.score(base, distractors=True)
    for name in names:
        result.rows[f"expert `{name}`"] = scorer.score(experts[name], distractors=True)
    everyone = {n: 1.0 / len(names) for n in names}
    result.rows[f"uniform, all {len(names)} (w = 1/{len(names)})"] = scorer.score(
        task_arithmetic(base, experts, everyone), distractors=True)
    skills_only = {n: 1.0 / len(zoo.skills) for n in zoo.skills}
    result.rows[f"uniform, skills (w = 1/{len(zoo.skills)})"] = scorer.score(
        task_arithmetic(base, experts, skills_only), distractors=True)

    best_score, best_weights = -1.0, {}
    grid = list(itertools.product(*([levels] * len(zoo.skills)), distractor_levels))
    log(f"seed {seed}: grid of {len(grid)} merges")
    for point in grid:
        weights = dict(zip(names, point))
        scores = scorer.score(task_arithmetic(base, experts, weights))
        if scores["multi"] > best_score:
            best_score, best_weights = scores["multi"], weights
            log(f"seed {seed}: new best {scores['multi']:.1f} at {weights}")
    result.best_weights, result.grid_size = best_weights, len(grid)
    best_state = task_arithmetic(base, experts, best_weights)
    result.rows["best grid merge (search)"] = scorer.score(best_state, distractors=True)
    result.best_heldout = scorer.score(best_state, "heldout", distractors=True)
    result.rows["best grid merge (held-out)"] = result.best_heldout
    result.evaluations = scorer.evaluations
    result.build_s, result.score_s = built - started, time.monotonic() - built
    return result


def verdicts(r: SeedResult, skills: tuple[str, ...]) -> dict[str, tuple[float, bool]]:
    experts_own = min(r.rows[f"expert `{s}`"][s] for s in skills)
    best_single = max(v["multi"] for k, v in r.rows.items() if k.startswith("expert"))
    best_uniform = max(v["multi"] for k, v in r.rows.items() if k.startswith("uniform"))
    best = r.rows["best grid merge (search)"]["multi"]
    gap = abs(r.best_heldout["multi"] - best)
    return {
        "weakest expert on own skill": (experts_own, experts_own >= EXPERT_MIN),
        "best merge − best single expert": (best - best_single, best - best_single >= BEST_OVER_EXPERT),
        "best merge − best uniform merge": (best - best_uniform, best - best_uniform >= BEST_OVER_UNIFORM),
        "best merge: held-out vs search gap": (gap, gap <= HELDOUT_GAP),
    }


def render(results: list[SeedResult], skills: tuple[str, ...], distractors: tuple[str, ...],
           size: str, levels: tuple[float, ...], distractor_levels: tuple[float, ...],
           command: str) -> str:
    cols = [*skills, "multi", "pairs", *distractors]
    lines = [f"### Zoo landscape (`{size}` zoo, seeds {', '.join(str(r.seed) for r in results)})", "",
             "Exact match in %, scored through lm-evaluation-harness on the search split unless marked "
             "held-out. *multi* is the mean over the objective skills (the zoo's composite lm-eval "
             "group); *pairs* are prompts that need two skills at once; the last columns are "
             "distractor skills no objective asks for. Merges are task arithmetic "
             "θ = base + Σ wᵢ(θᵢ − base); the grid tries every skill expert at weights "
             f"{{{', '.join(f'{v:g}' for v in levels)}}} and every distractor at "
             f"{{{', '.join(f'{v:g}' for v in distractor_levels)}}}, and keeps the best *multi* on "
             "the search split.", ""]
    for r in results:
        lines += [f"**seed {r.seed}** — best weights: "
                  + ", ".join(f"{k} {v:g}" for k, v in r.best_weights.items())
                  + f" (grid of {r.grid_size}; {r.evaluations} lm-eval runs in {r.score_s:.0f} s; "
                  f"zoo build {r.build_s:.0f} s, 0 if cached)", ""]
        lines.append("| model | " + " | ".join(cols) + " |")
        lines.append("|---|" + "---:|" * len(cols))
        for label, scores in r.rows.items():
            cells = (f"{scores[c]:.1f}" if c in scores else "–" for c in cols)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["**Criteria**", "", "| criterion | " + " | ".join(f"seed {r.seed}" for r in results)
              + " | target |", "|---|" + "---:|" * (len(results) + 1)]
    targets = [f"≥ {EXPERT_MIN:g}", f"≥ {BEST_OVER_EXPERT:g}", f"≥ {BEST_OVER_UNIFORM:g}",
               f"≤ {HELDOUT_GAP:g}"]
    table = [verdicts(r, skills) for r in results]
    for i, name in enumerate(table[0]):
        cells = [f"{v[name][0]:.1f} {'✅' if v[name][1] else '❌'}" for v in table]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {targets[i]} |")
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=["nano", "small"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--levels", type=float, nargs="+", default=[0.5, 0.75, 1.0],
                        help="weights tried for each skill expert")
    parser.add_argument("--distractor-levels", type=float, nargs="+", default=[0.0, 0.5],
                        help="weights tried for the distractor expert")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--markdown-out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    for quiet in ("TQDM_DISABLE", "HF_DATASETS_DISABLE_PROGRESS_BARS"):  # one bar per lm-eval run
        os.environ.setdefault(quiet, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = [run_seed(args.size, seed, tuple(args.levels), tuple(args.distractor_levels),
                        args.cache_dir, log) for seed in args.seeds]
    zoo = build_zoo(args.size, args.seeds[0], cache_dir=args.cache_dir)
    command = "python benchmarks/zoo_landscape.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = render(results, zoo.skills, zoo.distractors, args.size, tuple(args.levels),
                  tuple(args.distractor_levels), command.strip())
    print(text)
    if args.markdown_out:
        args.markdown_out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
