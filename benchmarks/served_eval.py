"""Served evaluation: a candidate's wall time split into merge, weight hand-over, scoring and the rest, per engine.

    nice .venv/bin/python -P benchmarks/served_eval.py [--candidates 6] [--cold-candidates 2] [--limit N]
        [--markdown-out benchmarks/results/served_eval.md]
    benchmarks/served_eval_cuda.sh          the same on a GPU with a 1B-shaped model (--shape 1b --device cuda)

Models and tasks: the nano expert zoo (`build_zoo("nano", seed)`, its generate_until search tasks, one per skill);
with `--shape 1b`, a random 1B-shaped Llama base (22 layers, width 2048, bf16) and experts of it (base + noise)
read through the zoo's tokenizer and tasks — it answers nonsense, which times generation at its longest.
Candidates are the same seeded random task_arithmetic recipes over all experts for every engine:

  (a) in-process   ResidentEngine: experts resident, the live transformers model re-merged in place.
  (b) cold vLLM    today's cluster design for served engines: per candidate, merge, write the checkpoint,
                   start a vLLM server on it (hand-over = write + start to /health), score, stop the server.
  (c) one vLLM     SwappingWorker: one server start per worker; per candidate, swap its weights in place
                   (collective_rpc reload_weights + reset_prefix_cache) and score, while the next candidate
                   is merged and written to /dev/shm (as a local run and an evaluation pod's batch do).

Per engine: mean seconds per candidate in each part, the non-scoring share, candidates per minute, and for (c)
the one server start amortised over the candidates timed. The scores of (c) are checked against (a)'s.
Targets of issue #17: with (c), non-scoring < 5 % of a candidate's time; (c) ≥ 3× the candidates per minute of (a).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from evomerge.catalogue.engines import VLLM
from evomerge.evaluate.engines import make_server_lm
from evomerge.evaluate.engines.options import EngineOptions
from evomerge.evaluate.engines.resident import ResidentEngine
from evomerge.evaluate.engines.served import SwappingWorker
from evomerge.evaluate.engines.vllm_process import VLLMServerProcess, cpu_server_python
from evomerge.evaluate.tasks import TaskSuite
from evomerge.merge.recipe import ExpertWeights, MergeRecipe
from evomerge.spec.merge_search import Objective
from evomerge.zoo import build_zoo

TARGET_NON_SCORING = 0.05
TARGET_SPEEDUP = 3.0
SHAPE_1B = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                num_key_value_heads=4, max_position_embeddings=2048)


@dataclass
class Parts:
    """Seconds per candidate in each part, one entry per candidate."""

    merge: list[float] = field(default_factory=list)
    handover: list[float] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    scores: list[dict[str, float]] = field(default_factory=list)

    def add(self, merge: float, handover: float, score: float, wall: float, scores: dict[str, float]) -> None:
        self.merge.append(merge)
        self.handover.append(handover)
        self.score.append(score)
        self.wall.append(wall)
        self.scores.append(scores)

    def mean(self, part: str) -> float:
        return statistics.fmean(getattr(self, part))

    @property
    def rest(self) -> float:
        return self.mean("wall") - self.mean("merge") - self.mean("handover") - self.mean("score")

    @property
    def non_scoring(self) -> float:
        return 1.0 - self.mean("score") / self.mean("wall")

    @property
    def per_minute(self) -> float:
        return 60.0 / self.mean("wall")


def random_recipes(base: Path, experts: dict[str, Path], n: int, seed: int) -> list[MergeRecipe]:
    rng = random.Random(seed)
    return [MergeRecipe("task_arithmetic", str(base),
                        tuple(ExpertWeights(name, str(path), {"weight": {"all": rng.uniform(0.0, 1.0)}})
                              for name, path in experts.items()), ("all",), {"normalize": False})
            for _ in range(n)]


def one_b_models(root: Path, zoo, experts: int, seed: int) -> tuple[Path, dict[str, Path]]:
    """A random 1B-shaped Llama (bf16) and `experts` copies of it plus noise, with the zoo's tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(zoo.base)
    config = LlamaConfig(vocab_size=max(len(tokenizer), 256), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=False, **SHAPE_1B)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    paths = {}
    for index, name in enumerate(["base", *(f"expert{i}" for i in range(experts))]):
        out = root / name
        if not (out / "config.json").exists():
            with torch.no_grad():
                copy = LlamaForCausalLM(config).to(torch.bfloat16)
                copy.load_state_dict(model.state_dict())
                if index:
                    generator = torch.Generator().manual_seed(seed * 100 + index)
                    for p in copy.parameters():
                        p.add_((0.002 * torch.randn(p.shape, generator=generator)).to(p.dtype))
            copy.save_pretrained(out)
            tokenizer.save_pretrained(out)
        paths[name] = out
    return paths.pop("base"), paths


def timed_in_process(engine: ResidentEngine, recipes: list[MergeRecipe]) -> Parts:
    parts = Parts()
    for recipe in recipes:
        merge0, score0 = engine.timings.merge_s, engine.timings.score_s
        started = time.perf_counter()
        scores = engine.score(recipe)
        wall = time.perf_counter() - started
        parts.add(engine.timings.merge_s - merge0, 0.0, engine.timings.score_s - score0, wall, scores)
    return parts


def timed_one_server(worker: SwappingWorker, suite_objectives, include_paths, recipes, seed,
                     following: MergeRecipe | None = None) -> Parts:
    """Per candidate, as a run scores it: told the next candidate, which is merged and written while this one is
    scored. "merge" is what the candidate still waited for its weights (merge + write not hidden), "hand-over" the
    in-place reload; the wall time is the candidate's whole time on the critical path."""
    engine = worker.engine(suite_objectives, include_paths, seed=seed)
    parts = Parts()
    upcoming = [*recipes[1:], following]
    for recipe, then in zip(recipes, upcoming):
        t = worker.timings
        ready0, swap0, score0 = t.ready_s, t.swap_s, t.score_s
        started = time.perf_counter()
        scores = engine.score(recipe, then=then)
        wall = time.perf_counter() - started
        parts.add(t.ready_s - ready0, t.swap_s - swap0, t.score_s - score0, wall, scores)
    return parts


def timed_cold(worker: SwappingWorker, suite: TaskSuite, recipes: list[MergeRecipe], scratch: Path,
               start: Callable[[Path, Path], VLLMServerProcess]) -> Parts:
    """Per candidate: merge, write a whole checkpoint, start a server on it, score, stop it (today's cluster design)."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(worker.served_dir)
    parts = Parts()
    worker.load_experts()
    for index, recipe in enumerate(recipes):
        started = time.perf_counter()
        worker.merger.merge_into(recipe, worker.target)
        merged = time.perf_counter()
        directory = scratch / f"candidate{index}"
        shutil.copytree(worker.served_dir, directory, ignore=shutil.ignore_patterns("*.safetensors", "*.index.json"))
        save_file(worker.target, str(directory / "model.safetensors"))
        server = start(directory, scratch / f"cold-{index}.log")
        handed = time.perf_counter()
        lm = make_server_lm(EngineOptions(engine="vllm", url=server.url), tokenizer, suite.greedy_tasks)
        scoring = time.perf_counter()
        scores = suite.run(lm)
        scored = time.perf_counter()
        lm.close()
        server.stop()
        shutil.rmtree(directory)
        wall = time.perf_counter() - started
        parts.add(merged - started, handed - merged, scored - scoring, wall, scores)
    return parts


def max_relative_difference(a: list[dict[str, float]], b: list[dict[str, float]]) -> float:
    worst = 0.0
    for x, y in zip(a, b):
        for key in x:
            worst = max(worst, abs(x[key] - y[key]) / max(abs(x[key]), abs(y[key]), 1e-12))
    return worst


def row(name: str, parts: Parts, extra: str = "") -> str:
    cells = [f"{parts.mean(p):.3f}" for p in ("merge", "handover", "score")]
    return (f"| {name} | {len(parts.wall)} | {' | '.join(cells)} | {parts.rest:.3f} | {parts.mean('wall'):.3f} | "
            f"{parts.non_scoring * 100:.1f}% | {parts.per_minute:.1f} | {extra} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=6, help="candidates timed for (a) and (c), after one warm-up")
    parser.add_argument("--cold-candidates", type=int, default=2, help="of those, how many (b) scores (each starts a server)")
    parser.add_argument("--limit", type=int, default=None, help="documents per task (default: all)")
    parser.add_argument("--shape", choices=("nano", "1b"), default="nano")
    parser.add_argument("--device", default="cpu", help="the in-process engine's device (cpu, cuda)")
    parser.add_argument("--experts", type=int, default=3, help="experts of the 1b shape")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="where the 1b models are written (default: a temp dir)")
    parser.add_argument("--markdown-out", type=Path, help="also write the results table here (feeds the README)")
    args = parser.parse_args()

    zoo = build_zoo("nano", args.seed)
    work = args.work or Path(tempfile.mkdtemp(prefix="served-eval-"))
    if args.shape == "1b":
        base, experts = one_b_models(work / "models-1b", zoo, args.experts, args.seed)
    else:
        base, experts = zoo.base, dict(zoo.experts)
    objectives = [Objective(task=zoo.search_tasks[s], metric=zoo.metric, limit=args.limit) for s in zoo.skills]
    include_paths = [str(zoo.tasks_dir)]
    recipes = random_recipes(base, experts, 1 + args.candidates, args.seed)
    extra_args: tuple[str, ...] = ("--gpu-memory-utilization", "0.5") if args.device.startswith("cuda") else ()

    def start(model_dir: Path, log: Path, max_model_len: int | None = None, dtype: str | None = None) -> VLLMServerProcess:
        config = json.loads((model_dir / "config.json").read_text())
        length = max_model_len or min(int(config.get("max_position_embeddings", 2048)), 2048)
        return VLLMServerProcess.start(model_dir, log, max_model_len=length,
                                       dtype=dtype or str(config.get("dtype") or config.get("torch_dtype") or "auto"),
                                       extra_args=extra_args)

    load = os.getloadavg()[0]
    # (a) in-process: warm-up on the first recipe, then the timed ones.
    resident = ResidentEngine(base, experts, objectives, include_paths, args.device, 16, seed=args.seed)
    documents = resident.suite.documents
    resident.score(recipes[0])
    in_process = timed_in_process(resident, recipes[1:])
    del resident
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

    with SwappingWorker.local(base, experts, work / "logs", start_server=start) as worker:
        # (c) one server: its start is timed once; the warm-up candidate pays it.
        first = time.perf_counter()
        timed_one_server(worker, objectives, include_paths, recipes[:1], args.seed, following=recipes[1])
        first_s = time.perf_counter() - first
        start_s = worker.timings.start_s
        merges0, merge0, write0 = worker.timings.merges, worker.timings.merge_s, worker.timings.write_s
        one_server = timed_one_server(worker, objectives, include_paths, recipes[1:], args.seed)
        hidden_s = (worker.timings.merge_s - merge0 + worker.timings.write_s - write0) / max(1, worker.timings.merges - merges0)
        swap_ms = statistics.median(one_server.handover) * 1000
        worker.stop_server()
        # (b) a cold server per candidate, on the first of the same recipes.
        suite = TaskSuite.build(objectives, include_paths, args.seed)
        cold = timed_cold(worker, suite, recipes[1:1 + args.cold_candidates], worker.scratch, start)

    same = max_relative_difference(in_process.scores, one_server.scores)
    amortised = (start_s + sum(one_server.wall)) / len(one_server.wall)
    speedup = one_server.per_minute / in_process.per_minute
    non_scoring_ok = one_server.non_scoring < TARGET_NON_SCORING
    speedup_ok = speedup >= TARGET_SPEEDUP
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU, {os.cpu_count()} cores"
    model = ("nano zoo (2-layer Llama, width 128, float32)" if args.shape == "nano"
             else f"random 1B-shaped Llama ({SHAPE_1B['num_hidden_layers']} layers, width {SHAPE_1B['hidden_size']}, bf16)")
    lines = [
        f"### Served evaluation ({model}; {device}; vLLM {VLLM.cpu_build.version if args.device == 'cpu' else 'CUDA'})",
        "",
        f"`{'benchmarks/served_eval_cuda.sh' if args.shape == '1b' else 'nice .venv/bin/python -P benchmarks/served_eval.py --markdown-out benchmarks/results/served_eval.md'}`"
        f" — {len(experts)} experts, tasks {', '.join(f'{t} ({n})' for t, n in documents.items())}, load average {load:.1f} at the start",
        "",
        "| engine | candidates | merge s | hand-over s | scoring s | rest s | wall s | not scoring | candidates/min | |",
        "|---|---|---|---|---|---|---|---|---|---|",
        row("(a) in-process transformers", in_process),
        row("(b) cold vLLM start per candidate", cold, "hand-over = write + start to /health"),
        row("(c) one vLLM server, in-place swaps", one_server,
            f"+ one start {start_s:.1f} s per worker: {60 / amortised:.1f}/min amortised over {len(one_server.wall)}"),
        "",
        f"- (c) hand-over (reload_weights + reset_prefix_cache): median {swap_ms:.0f} ms; the next candidate's merge and "
        f"write to /dev/shm ({hidden_s * 1000:.0f} ms per candidate) run while the current one is scored, so its "
        f"merge column is only what was not hidden; server start to /health {start_s:.1f} s (first candidate with "
        f"the start: {first_s:.1f} s).",
        f"- (c) against (a): {speedup:.2f}× the candidates per minute (target ≥ {TARGET_SPEEDUP:g}×: "
        f"{'met' if speedup_ok else 'MISSED'}); not scoring {one_server.non_scoring * 100:.1f}% of a candidate "
        f"(target < {TARGET_NON_SCORING * 100:g}%: {'met' if non_scoring_ok else 'MISSED'}).",
        f"- (c) against (b): {one_server.per_minute / cold.per_minute:.1f}× the candidates per minute.",
        f"- Scores of (c) against (a), same recipes: largest relative difference {same:.1e}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown_out:
        args.markdown_out.write_text(text)
    print(f"vLLM python: {os.environ.get('EVOMERGE_VLLM_PYTHON') or cpu_server_python()}")


if __name__ == "__main__":
    main()
