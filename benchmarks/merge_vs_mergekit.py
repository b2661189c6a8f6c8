"""Merge export speed and memory against mergekit 0.1.5, side by side in one run on one machine.

    python benchmarks/merge_vs_mergekit.py [--methods ties,dare_ties,linear] [--work DIR]

Builds a base and 3 experts of a 12-layer, width-768 Llama (≈134M parameters, bfloat16, random weights),
then for each method exports the same recipe with mergekit (its Python API, `run_merge`) and with
evomerge (`export_merge`), each in its own child process so peak RSS is that side's alone, and times a
resident re-merge of a candidate (experts in memory, written into a live model) on this machine.
Printed ratios are mergekit / evomerge (speed) and evomerge peak / the streaming bound (memory).
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder leads sys.path; it may hold a module named like the standard library's
# (benchmarks/operator.py), which would shadow it. Only the repository's packages are wanted from here.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

HERE = Path(__file__).resolve()
CONFIG = dict(
    vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
    num_key_value_heads=12, max_position_embeddings=2048, tie_word_embeddings=False, rms_norm_eps=1e-6,
)
METHOD_GENES = {"ties": ("weight", "density"), "dare_ties": ("weight", "density"), "dare_linear": ("weight", "density"),
                "task_arithmetic": ("weight",), "linear": ("weight",)}


def generate_models(root: Path, n_experts: int = 3, seed: int = 0) -> dict[str, Path]:
    """Base = N(0, 0.02) weights (norms ≈ 1); expert i = base + N(0, 0.002) noise, all bfloat16 safetensors."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**CONFIG)
    with torch.device("meta"):
        shapes = {n: tuple(p.shape) for n, p in LlamaForCausalLM(config).state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    base = {n: (1 + 0.02 * torch.randn(s, generator=generator) if len(s) == 1 else 0.02 * torch.randn(s, generator=generator))
            for n, s in shapes.items()}
    paths: dict[str, Path] = {}
    for name in ["base"] + [f"expert{i}" for i in range(n_experts)]:
        out = root / name
        out.mkdir(parents=True, exist_ok=True)
        tensors = base if name == "base" else {n: t + 0.002 * torch.randn(t.shape, generator=generator) for n, t in base.items()}
        save_file({n: t.to(torch.bfloat16).contiguous() for n, t in tensors.items()}, str(out / "model.safetensors"),
                  metadata={"format": "pt"})
        config.dtype = torch.bfloat16
        config.architectures = ["LlamaForCausalLM"]
        config.save_pretrained(out)
        paths[name] = out
    return paths


def make_recipe(method: str, paths: dict[str, Path], seed: int = 0, **options) -> dict:
    from evomerge.merge.recipe import ExpertWeights, MergeRecipe

    values = {"weight": [0.5, 0.6, 0.7], "density": [0.5, 0.5, 0.5]}
    experts = tuple(
        ExpertWeights(f"expert{i}", str(paths[f"expert{i}"]), {g: {"all": values[g][i]} for g in METHOD_GENES[method]})
        for i in range(3)
    )
    base_uri = str(paths["base"]) if method != "linear" else None
    return MergeRecipe(method, base_uri, experts, ("all",), {"seed": seed, **options}).to_dict()


# --- children: each measures itself -------------------------------------------------------------------


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_mergekit(recipe: dict, num_layers: int, out: str, seed: int) -> dict:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    from evomerge.merge.mergekit_config import to_mergekit_config
    from evomerge.merge.recipe import MergeRecipe

    config = MergeConfiguration.model_validate(to_mergekit_config(MergeRecipe.from_dict(recipe), num_layers))
    baseline = _rss_mb()
    start = time.perf_counter()
    run_merge(config, out, MergeOptions(random_seed=seed, quiet=True, copy_tokenizer=False))
    return {"seconds": time.perf_counter() - start, "peak_mb": _rss_mb(), "baseline_mb": baseline}


def child_evomerge(recipe: dict, out: str) -> dict:
    from evomerge.merge.export import export_merge
    from evomerge.merge.recipe import MergeRecipe
    from evomerge.models.checkpoint import open_checkpoint

    r = MergeRecipe.from_dict(recipe)
    _load_kernels(r)
    baseline = _rss_mb()
    start = time.perf_counter()
    base = open_checkpoint(Path(r.base_uri)) if r.base_uri else None
    experts = {e.name: open_checkpoint(Path(e.uri)) for e in r.experts}
    export_merge(r, base, experts, Path(out))
    seconds = time.perf_counter() - start
    largest = max(t.nbytes for t in experts[r.experts[0].name].infos.values())
    inputs = len(experts) + (1 if base is not None else 0)
    return {"seconds": seconds, "peak_mb": _rss_mb(), "baseline_mb": baseline, "largest_mb": largest / 2**20, "inputs": inputs}


def _load_kernels(recipe) -> None:
    """Load the compiled kernels on a tiny tensor first: like imports, their runtime is a fixed cost, not data."""
    from evomerge.merge.apply import merge_tensor, method_options

    tiny = torch.zeros(8, dtype=torch.bfloat16)
    merge_tensor(recipe, "warmup", tiny, [tiny + 0.01 * (i + 1) for i in range(len(recipe.experts))], 1,
                 method_options(recipe))


def child_resident(recipe: dict, repeats: int) -> dict:
    """Time re-merging candidates into a live model with the experts resident (after the one-off warm-up)."""
    from transformers import AutoModelForCausalLM

    from evomerge.merge.recipe import MergeRecipe
    from evomerge.merge.resident import ResidentMerger
    from evomerge.models.checkpoint import open_checkpoint

    r = MergeRecipe.from_dict(recipe)
    base = open_checkpoint(Path(r.base_uri)) if r.base_uri else None
    experts = {e.name: open_checkpoint(Path(e.uri)) for e in r.experts}
    reference = base or experts[r.experts[0].name]
    model = AutoModelForCausalLM.from_pretrained(reference.root, dtype=torch.bfloat16)
    target = model.state_dict()
    merger = ResidentMerger(base, experts, model.config.num_hidden_layers)
    start = time.perf_counter()
    merger.merge_into(r, target)
    warmup = time.perf_counter() - start
    times = []
    for i in range(repeats):
        shifted = MergeRecipe.from_dict(recipe)
        for e in shifted.experts:
            for gene in e.params:
                e.params[gene]["all"] = min(1.0, e.params[gene]["all"] + 0.01 * (i + 1))
        start = time.perf_counter()
        merger.merge_into(shifted, target)
        times.append(time.perf_counter() - start)
    return {"warmup_seconds": warmup, "seconds": statistics.median(times), "peak_mb": _rss_mb()}


def run_child(kind: str, payload: dict) -> dict:
    result = subprocess.run(
        [sys.executable, str(HERE), "--child", kind], input=json.dumps(payload), capture_output=True, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def child_main(kind: str) -> None:
    payload = json.loads(sys.stdin.read())
    if kind == "mergekit":
        out = child_mergekit(payload["recipe"], payload["num_layers"], payload["out"], payload["seed"])
    elif kind == "evomerge":
        out = child_evomerge(payload["recipe"], payload["out"])
    else:
        out = child_resident(payload["recipe"], payload["repeats"])
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="ties,dare_ties,linear")
    parser.add_argument("--work", type=Path, default=None, help="folder for the models and outputs (default: a temp dir)")
    parser.add_argument("--repeats", type=int, default=3, help="resident re-merges timed per method")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="evomerge-bench-"))
    models = work / "models"
    start = time.perf_counter()
    paths = generate_models(models) if not (models / "expert2" / "config.json").exists() else \
        {n: models / n for n in ("base", "expert0", "expert1", "expert2")}
    print(f"models: {models} ({time.perf_counter() - start:.1f} s to generate)")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    rows = []
    for method in args.methods.split(","):
        recipe = make_recipe(method, paths)
        mk = run_child("mergekit", {"recipe": recipe, "num_layers": CONFIG["num_hidden_layers"], "out": str(work / f"mk-{method}"), "seed": 0})
        ev = run_child("evomerge", {"recipe": recipe, "out": str(work / f"ev-{method}")})
        rs = run_child("resident", {"recipe": recipe, "repeats": args.repeats})
        bound = ev["largest_mb"] * ev["inputs"]
        rows.append((method, mk, ev, rs, bound))
        print(
            f"{method:>12}: mergekit {mk['seconds']:6.2f} s, peak {mk['peak_mb']:6.0f} MB (baseline {mk['baseline_mb']:.0f}) | "
            f"evomerge {ev['seconds']:6.2f} s, peak {ev['peak_mb']:6.0f} MB (baseline {ev['baseline_mb']:.0f}) | "
            f"speedup {mk['seconds'] / ev['seconds']:5.1f}x | "
            f"net peak / bound {(ev['peak_mb'] - ev['baseline_mb']) / bound:4.2f} (bound {bound:.0f} MB = largest tensor x inputs) | "
            f"resident {rs['seconds']:6.3f} s/candidate (warm-up {rs['warmup_seconds']:.1f} s), export/resident {ev['seconds'] / rs['seconds']:5.1f}x"
        )


if __name__ == "__main__":
    main()
