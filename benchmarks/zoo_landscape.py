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
import statistics
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
    """One resident model and one lm-eval task dict per split, reused for every candidate."""

    def __init__(self, zoo: Zoo, batch_size: int = 512):
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager, get_task_dict
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.zoo = zoo
        self.model = AutoModelForCausalLM.from_pretrained(zoo.base, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(zoo.base)
        self.lm = HFLM(pretrained=self.model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")
        manager = TaskManager(include_path=str(zoo.tasks_dir), include_defaults=False)
        self.keys = list(zoo.skills) + ["pairs"]
        self.task_dicts = {
            split: get_task_dict([tasks[k] for k in self.keys], manager)
            for split, tasks in (("search", zoo.search_tasks), ("heldout", zoo.heldout_tasks))
        }
        self.evaluations = 0

    def score(self, state: dict[str, torch.Tensor], split: str = "search") -> dict[str, float]:
        """Exact match (in %) per skill and for pairs, plus ``multi`` (mean over skills)."""
        from lm_eval.evaluator import evaluate

        self.model.load_state_dict(state)
        out = evaluate(lm=self.lm, task_dict=self.task_dicts[split], bootstrap_iters=0,
                       log_samples=False)
        self.evaluations += 1
        tasks = self.zoo.search_tasks if split == "search" else self.zoo.heldout_tasks
        metric = f"{self.zoo.metric},none"
        scores = {k: 100.0 * out["results"][tasks[k]][metric] for k in self.keys}
        scores["multi"] = statistics.fmean(scores[s] for s in self.zoo.skills)
        return scores


@dataclass
class SeedResult:
    seed: int
    rows: dict[str, dict[str, float]] = field(default_factory=dict)  # row label -> scores
    best_weights: dict[str, float] = field(default_factory=dict)
    best_heldout: dict[str, float] = field(default_factory=dict)
    evaluations: int = 0
    seconds: float = 0.0


def load_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def run_seed(size: str, seed: int, levels: tuple[float, ...], distractor_levels: tuple[float, ...],
             cache_dir: Path | None, log) -> SeedResult:
    started = time.monotonic()
    zoo = build_zoo(size, seed, cache_dir=cache_dir, progress=log)
    scorer = LmEvalScorer(zoo)
    base = load_state(zoo.base)
    experts = {name: load_state(path) for name, path in zoo.experts.items()}
    names = list(zoo.skills) + list(zoo.distractors)
    result = SeedResult(seed)

    result.rows["base"] = scorer.score(base)
    for name in names:
        result.rows[f"expert `{name}`"] = scorer.score(experts[name])
    everyone = {n: 1.0 / len(names) for n in names}
    result.rows[f"uniform, all {len(names)} (w = 1/{len(names)})"] = scorer.score(
        task_arithmetic(base, experts, everyone))
    skills_only = {n: 1.0 / len(zoo.skills) for n in zoo.skills}
    result.rows[f"uniform, skills (w = 1/{len(zoo.skills)})"] = scorer.score(
        task_arithmetic(base, experts, skills_only))

    best_score, best_weights = -1.0, {}
    grid = list(itertools.product(*([levels] * len(zoo.skills)), distractor_levels))
    log(f"seed {seed}: grid of {len(grid)} merges")
    for point in grid:
        weights = dict(zip(names, point))
        scores = scorer.score(task_arithmetic(base, experts, weights))
        if scores["multi"] > best_score:
            best_score, best_weights = scores["multi"], weights
            result.rows["best grid merge (search)"] = scores
            log(f"seed {seed}: new best {scores['multi']:.1f} at {weights}")
    result.best_weights = best_weights
    result.best_heldout = scorer.score(task_arithmetic(base, experts, best_weights), "heldout")
    result.rows["best grid merge (held-out)"] = result.best_heldout
    result.evaluations = scorer.evaluations
    result.seconds = time.monotonic() - started
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
        "|held-out − search| of best merge": (gap, gap <= HELDOUT_GAP),
    }


def render(results: list[SeedResult], skills: tuple[str, ...], size: str, command: str) -> str:
    cols = list(skills) + ["pairs", "multi"]
    lines = [f"### Zoo landscape (`{size}` zoo, seeds {', '.join(str(r.seed) for r in results)})", "",
             "Exact match in %, scored through lm-evaluation-harness on the search split unless marked "
             "held-out. *multi* is the mean over the objective skills; *pairs* are prompts that need "
             "two skills at once. Merges are task arithmetic θ = base + Σ wᵢ(θᵢ − base).", ""]
    for r in results:
        lines += [f"**seed {r.seed}** — best weights: "
                  + ", ".join(f"{k} {v:g}" for k, v in r.best_weights.items())
                  + f" ({r.evaluations} lm-eval runs, {r.seconds:.0f}s)", ""]
        lines.append("| model | " + " | ".join(cols) + " |")
        lines.append("|---|" + "---:|" * len(cols))
        for label, scores in r.rows.items():
            lines.append(f"| {label} | " + " | ".join(f"{scores[c]:.1f}" for c in cols) + " |")
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
    parser.add_argument("--levels", type=float, nargs="+", default=[0.25, 0.5, 1.0, 1.5],
                        help="weights tried for each skill expert")
    parser.add_argument("--distractor-levels", type=float, nargs="+", default=[0.0, 0.5],
                        help="weights tried for the distractor expert")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--markdown-out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = [run_seed(args.size, seed, tuple(args.levels), tuple(args.distractor_levels),
                        args.cache_dir, log) for seed in args.seeds]
    skills = build_zoo(args.size, args.seeds[0], cache_dir=args.cache_dir).skills
    command = "python benchmarks/zoo_landscape.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = render(results, skills, args.size, command.strip())
    print(text)
    if args.markdown_out:
        args.markdown_out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
