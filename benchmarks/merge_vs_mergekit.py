"""Merge export speed and memory against mergekit 0.1.5, side by side in one run on one machine.

    python benchmarks/merge_vs_mergekit.py [--methods ties,ties:index,dare_ties,linear] [--densities 0.3,0.5,0.7]
        [--deltas finetune|noise] [--work DIR] [--shape 134m|1b] [--device cuda]

Builds a base and 3 experts of a 12-layer, width-768 Llama (≈134M parameters, bfloat16, random weights; `--shape 1b`:
TinyLlama's 22 layers of width 2048, ≈1.1B). `--deltas finetune` (the default) makes each expert like a fine-tune in
bf16: 40 % of the entries moved by a few bf16 steps, so task vectors tie in large groups at TIES's density cut;
`noise` moves every entry by N(0, 0.002). `METHOD:index` runs the method with the resident merger's fast tie order
(the exporter's default is mergekit's) and counts the elements where its output differs from mergekit's.
then for each method exports the same recipe with mergekit (its Python API, `run_merge`) and with
evomerge (`export_merge`), each in its own child process so peak RSS is that side's alone, and times a
resident re-merge of a candidate (experts in memory, written into a live model) on this machine, on `--device`
(a GPU's time is taken after synchronising it).
Each export runs `--export-repeats` times per side, alternating, into an emptied folder after an untimed
`sync`. Printed ratios are of the medians: mergekit / evomerge (speed, wall clock; CPU seconds beside it,
since on a shared machine wall time includes waiting for cores) and evomerge's net peak / the streaming
bound (memory: the largest tensor once per input plus once for the output in flight), then a table against
the targets of issue #4.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder leads sys.path, where a sibling shadows the installed module of its name
# (benchmarks/evaluate.py hides Hugging Face's `evaluate`, which some lm-eval tasks import). Only the
# repository's packages are wanted from here.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

HERE = Path(__file__).resolve()
SHAPES = {
    "134m": dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
                 num_key_value_heads=12, max_position_embeddings=2048, tie_word_embeddings=False, rms_norm_eps=1e-6),
    "1b": dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, max_position_embeddings=2048, tie_word_embeddings=False, rms_norm_eps=1e-5),
}
METHOD_GENES = {"ties": ("weight", "density"), "dare_ties": ("weight", "density"), "dare_linear": ("weight", "density"),
                "task_arithmetic": ("weight",), "linear": ("weight",)}


def generate_models(root: Path, shape: dict, deltas: str, n_experts: int = 3, seed: int = 0) -> dict[str, Path]:
    """Base = N(0, 0.02) weights (norms ≈ 1); expert i = base + a task vector (see --deltas), all bfloat16 safetensors."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape)
    with torch.device("meta"):
        shapes = {n: tuple(p.shape) for n, p in LlamaForCausalLM(config).state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    base = {n: (1 + 0.02 * torch.randn(s, generator=generator) if len(s) == 1 else 0.02 * torch.randn(s, generator=generator))
            for n, s in shapes.items()}
    paths: dict[str, Path] = {}
    for name in ["base"] + [f"expert{i}" for i in range(n_experts)]:
        out = root / name
        out.mkdir(parents=True, exist_ok=True)
        tensors = base if name == "base" else {n: t + _task_vector(t, deltas, generator) for n, t in base.items()}
        save_file({n: t.to(torch.bfloat16).contiguous() for n, t in tensors.items()}, str(out / "model.safetensors"),
                  metadata={"format": "pt"})
        config.dtype = torch.bfloat16
        config.architectures = ["LlamaForCausalLM"]
        config.save_pretrained(out)
        paths[name] = out
    return paths


def _task_vector(t: torch.Tensor, deltas: str, generator: torch.Generator) -> torch.Tensor:
    if deltas == "noise":
        return 0.002 * torch.randn(t.shape, generator=generator)
    moved = torch.rand(t.shape, generator=generator) < 0.4
    return 0.0005 * torch.randn(t.shape, generator=generator) * moved  # a few bf16 steps of a 0.02-sized weight


def make_recipe(method: str, paths: dict[str, Path], densities: list[float], seed: int = 0, **options) -> dict:
    from evomerge.merge.recipe import ExpertWeights, MergeRecipe

    values = {"weight": [0.5, 0.6, 0.7], "density": densities}
    experts = tuple(
        ExpertWeights(f"expert{i}", str(paths[f"expert{i}"]), {g: {"all": values[g][i]} for g in METHOD_GENES[method]})
        for i in range(3)
    )
    base_uri = str(paths["base"]) if method != "linear" else None
    return MergeRecipe(method, base_uri, experts, ("all",), {"seed": seed, **options}).to_dict()


# --- children: each measures itself -------------------------------------------------------------------


TARGETS = {"ties": 10.0, "dare_ties": 10.0, "linear": 3.0}  # export speedup over mergekit (issue #4)
RESIDENT_TARGET = 50.0  # export / resident re-merge
MEMORY_TARGET = 1.5  # net peak / bound


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that across exec, so a child
    would report the parent's peak (the model generation) instead of its own."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_mergekit(recipe: dict, num_layers: int, out: str, seed: int) -> dict:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    from evomerge.merge.mergekit_config import to_mergekit_config
    from evomerge.merge.recipe import MergeRecipe

    config = MergeConfiguration.model_validate(to_mergekit_config(MergeRecipe.from_dict(recipe), num_layers))
    baseline = _rss_mb()
    start, cpu = time.perf_counter(), _cpu_s()
    run_merge(config, out, MergeOptions(random_seed=seed, quiet=True, copy_tokenizer=False))
    return {"seconds": time.perf_counter() - start, "cpu_seconds": _cpu_s() - cpu, "peak_mb": _rss_mb(), "baseline_mb": baseline}


def child_evomerge(recipe: dict, out: str) -> dict:
    from evomerge.merge.export import export_merge
    from evomerge.merge.recipe import MergeRecipe
    from evomerge.models.checkpoint import open_checkpoint

    r = MergeRecipe.from_dict(recipe)
    _load_kernels(r)
    baseline = _rss_mb()
    start, cpu = time.perf_counter(), _cpu_s()
    base = open_checkpoint(Path(r.base_uri)) if r.base_uri else None
    experts = {e.name: open_checkpoint(Path(e.uri)) for e in r.experts}
    export_merge(r, base, experts, Path(out))
    seconds, cpu = time.perf_counter() - start, _cpu_s() - cpu
    largest = max(t.nbytes for t in experts[r.experts[0].name].infos.values())
    inputs = len(experts) + (1 if base is not None else 0)
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_mb": _rss_mb(), "baseline_mb": baseline,
            "largest_mb": largest / 2**20, "inputs": inputs}


class _Scratch:
    """The exporter's workspace protocol with plain allocations: the warm-up then takes the export's kernel paths."""

    def scratch(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        return torch.empty(numel, dtype=dtype)

    def release(self, tensor: torch.Tensor) -> None:
        pass


def _load_kernels(recipe) -> None:
    """Load the compiled kernels on small tensors first: like imports, their runtime is a fixed cost, not data.
    One tensor is large enough (2^18 elements) for the paths that only large tensors take (TIES' bracket); each
    runs with and without a workspace and in each one's default tie order, as the resident merger and the exporter call them."""
    from evomerge.merge.apply import merge_tensor, method_options

    generator = torch.Generator().manual_seed(1)
    for numel in (8, 1 << 18):
        base = (0.02 * torch.randn(numel, generator=generator)).to(torch.bfloat16)
        experts = [(base.float() + 0.002 * torch.randn(numel, generator=generator)).to(torch.bfloat16)
                   for _ in recipe.experts]
        for options in (method_options(recipe), {**method_options(recipe, tie_order="mergekit"), "workspace": _Scratch()}):
            merge_tensor(recipe, "warmup", base, experts, 1, options)


def child_resident(recipe: dict, repeats: int, device: str) -> dict:
    """Time re-merging candidates into a live model with the experts resident on `device` (after the one-off warm-up)."""
    from transformers import AutoModelForCausalLM

    from evomerge.merge.recipe import MergeRecipe
    from evomerge.merge.resident import ResidentMerger
    from evomerge.models.checkpoint import open_checkpoint

    r = MergeRecipe.from_dict(recipe)
    base = open_checkpoint(Path(r.base_uri)) if r.base_uri else None
    experts = {e.name: open_checkpoint(Path(e.uri)) for e in r.experts}
    reference = base or experts[r.experts[0].name]
    model = AutoModelForCausalLM.from_pretrained(reference.root, dtype=torch.bfloat16).to(device)
    target = model.state_dict()
    merger = ResidentMerger(base, experts, model.config.num_hidden_layers, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    start = time.perf_counter()
    merger.merge_into(r, target)
    sync()
    warmup = time.perf_counter() - start
    times, cpus = [], []
    for i in range(repeats):
        shifted = MergeRecipe.from_dict(recipe)
        for e in shifted.experts:
            for gene in e.params:
                e.params[gene]["all"] = min(1.0, e.params[gene]["all"] + 0.01 * (i + 1))
        start, cpu = time.perf_counter(), _cpu_s()
        merger.merge_into(shifted, target)
        sync()
        times.append(time.perf_counter() - start)
        cpus.append(_cpu_s() - cpu)
    return {"warmup_seconds": warmup, "seconds": statistics.median(times), "cpu_seconds": statistics.median(cpus),
            "peak_mb": _rss_mb()}


def _differing_elements(ours: Path, theirs: Path) -> tuple[int, int]:
    from safetensors.torch import load_file

    def tensors(folder: Path) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for file in sorted(folder.glob("*.safetensors")):
            out.update(load_file(str(file)))
        return out

    a, b = tensors(ours), tensors(theirs)
    if set(a) != set(b):
        raise RuntimeError(f"{ours} and {theirs} hold different tensors: {sorted(set(a) ^ set(b))}")
    return sum(int((a[n] != b[n]).sum()) for n in a), sum(t.numel() for t in a.values())


def run_child(kind: str, payload: dict) -> dict:
    if "out" in payload:  # an earlier run's output is deleted untimed: neither side is charged for it
        shutil.rmtree(payload["out"], ignore_errors=True)
    os.sync()  # nor for writing back the other side's output while it runs
    result = subprocess.run(
        [sys.executable, str(HERE), "--child", kind], input=json.dumps(payload), capture_output=True, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _median_run(runs: list[dict]) -> dict:
    """Median wall and CPU time over repeated runs (a shared machine has slow spells); the largest peak."""
    out = dict(runs[0])
    for key in ("seconds", "cpu_seconds"):
        out[key] = statistics.median(r[key] for r in runs)
    worst = max(runs, key=lambda r: r["peak_mb"] - r["baseline_mb"])
    out["peak_mb"], out["baseline_mb"] = worst["peak_mb"], worst["baseline_mb"]
    return out


def child_main(kind: str) -> None:
    payload = json.loads(sys.stdin.read())
    if kind == "mergekit":
        out = child_mergekit(payload["recipe"], payload["num_layers"], payload["out"], payload["seed"])
    elif kind == "evomerge":
        out = child_evomerge(payload["recipe"], payload["out"])
    else:
        out = child_resident(payload["recipe"], payload["repeats"], payload["device"])
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="ties,ties:index,dare_ties,linear",
                        help="METHOD or METHOD:index (TIES in the resident merger's fast tie order)")
    parser.add_argument("--densities", default="0.3,0.5,0.7", help="the three experts' densities (ties, dare_*)")
    parser.add_argument("--deltas", choices=("finetune", "noise"), default="finetune", help="what the experts' task vectors look like")
    parser.add_argument("--work", type=Path, default=None, help="folder for the models and outputs (default: a temp dir)")
    parser.add_argument("--repeats", type=int, default=3, help="resident re-merges timed per method")
    parser.add_argument("--export-repeats", type=int, default=3,
                        help="exports per side and method (medians are compared; the peak is the largest)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="134m", help="model shape (issue #4: 134m; its CUDA report: 1b)")
    parser.add_argument("--device", default="cpu", help="where the resident merger holds the experts (cpu, cuda)")
    parser.add_argument("--skip-mergekit", action="store_true",
                        help="export and resident times only (a GPU machine without mergekit: issue #4's CUDA report)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="evomerge-bench-"))
    shape = SHAPES[args.shape]
    models = work / f"models-{args.shape}-{args.deltas}"
    start = time.perf_counter()
    paths = generate_models(models, shape, args.deltas) if not (models / "expert2" / "config.json").exists() else \
        {n: models / n for n in ("base", "expert0", "expert1", "expert2")}
    print(f"models: {models} ({time.perf_counter() - start:.1f} s to generate)")
    device = torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, resident merger on {device}")
    densities = [float(d) for d in args.densities.split(",")]
    print(f"task vectors: {args.deltas}; densities {densities}")
    rows = []
    mergekit_runs: dict[str, list[dict]] = {}
    for label in args.methods.split(","):
        method, _, order = label.partition(":")
        recipe = make_recipe(method, paths, densities, **({"tie_order": order} if order else {}))
        sides = ("evomerge",) if args.skip_mergekit else ("mergekit", "evomerge")
        runs: dict[str, list[dict]] = {side: [] for side in sides}
        measured = "mergekit" in runs and method in mergekit_runs  # mergekit has no tie order: its runs are the method's
        for _ in range(args.export_repeats):  # alternating, so a slow spell of a shared machine hits both sides
            if "mergekit" in runs and not measured:
                runs["mergekit"].append(run_child("mergekit", {"recipe": recipe, "num_layers": shape["num_hidden_layers"],
                                                               "out": str(work / f"mk-{method}"), "seed": 0}))
            runs["evomerge"].append(run_child("evomerge", {"recipe": recipe, "out": str(work / f"ev-{label}")}))
        if measured:
            runs["mergekit"] = mergekit_runs[method]
        elif "mergekit" in runs:
            mergekit_runs[method] = runs["mergekit"]
        ev = _median_run(runs["evomerge"])
        mk = _median_run(runs["mergekit"]) if "mergekit" in runs else None
        if mk is not None and method in ("ties", "task_arithmetic", "linear"):  # deterministic: the bytes can be compared
            differ, total = _differing_elements(work / f"ev-{label}", work / f"mk-{method}")
            print(f"{label:>12}: {differ} of {total} elements differ from mergekit's output ({differ / total:.4%})", flush=True)
        rs = run_child("resident", {"recipe": recipe, "repeats": args.repeats, "device": args.device})
        bound = ev["largest_mb"] * (ev["inputs"] + 1)
        rows.append((label, mk, ev, rs, bound))
        peer = (f"mergekit {mk['seconds']:6.2f} s (cpu {mk['cpu_seconds']:6.2f}), net peak {mk['peak_mb'] - mk['baseline_mb']:5.0f} MB | "
                if mk else "")
        print(
            f"{label:>12}: {peer}evomerge {ev['seconds']:6.2f} s (cpu {ev['cpu_seconds']:6.2f}), net peak {ev['peak_mb'] - ev['baseline_mb']:5.0f} MB "
            f"(bound {bound:.0f} MB = largest tensor x (inputs + output)) | "
            f"resident {rs['seconds']:6.3f} s/candidate (cpu {rs['cpu_seconds']:6.3f}, warm-up {rs['warmup_seconds']:.1f} s)",
            flush=True,
        )
        times = " | ".join(f"{side} " + " ".join(f"{r['seconds']:.2f}" for r in side_runs) for side, side_runs in runs.items())
        print(f"{'':>12}  export runs (s): {times}", flush=True)
    print()
    print(f"{'method':>12} | {'export speedup (target)':>23} | {'cpu-time speedup':>16} | {'net peak / bound (target)':>25} | "
          f"{'export / resident (target)':>26}")
    for method, mk, ev, rs, bound in rows:
        target = f"{TARGETS[method]:.0f}x" if method in TARGETS else "-"  # METHOD:index rows have no target
        memory = (ev["peak_mb"] - ev["baseline_mb"]) / bound
        speed = f"{mk['seconds'] / ev['seconds']:16.1f}x ({target:>3}) | {mk['cpu_seconds'] / ev['cpu_seconds']:15.1f}x" if mk else \
            f"{'-':>23} | {'-':>16}"
        print(f"{method:>12} | {speed} | {memory:18.2f} ({MEMORY_TARGET}) | {ev['seconds'] / rs['seconds']:19.1f}x ({RESIDENT_TARGET:.0f}x)")


if __name__ == "__main__":
    main()
