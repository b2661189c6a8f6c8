"""The resident merger: experts held in memory, a candidate written into a live model in place.

Between candidates only the parameters change, so what does not depend on them is computed once and
kept on the merge device: the inputs in the merge dtype and the task vectors δᵢ = θᵢ − b (stacked per
tensor). With `cache_masks`, the fused kernels also keep each δᵢ's magnitude-key histogram (TIES: the
cut of any density is a lookup, plus a tie-count pass when it splits equal magnitudes) or its exact L1
mass per uniform bucket (DARE: the rescale factor of any bf16 density is a prefix sum), so a candidate
costs about one combine pass written straight into the model's weights. Where the torch path runs
instead (mergekit's tie order or RNG stream, other devices), `cache_masks` keeps each δᵢ's magnitude
ranks (the top-k mask of any density is `ranks < k`) and the uniforms behind DARE's masks (the mask of
any density is `u < p`). The result equals the exporter's bit for bit on the same device: both call the
same functions.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.checkpoint import TensorSource, open_checkpoint
from .apply import expert_params, method_options
from .groups import group_of
from .inputs import open_source
from .methods import MergeMethod, get_method, linear_into
from .recipe import MergeRecipe
from . import kernels
from .sparsify import draw_uniforms, magnitude_ranks, tensor_seed
from .task_arithmetic import FusedCache, merge_family, uses_fused

log = logging.getLogger(__name__)
MASK_CACHE_SHARE = 0.5  # of the memory the device has free besides the base and the task vectors


@dataclass
class _Prepared:
    """Per-tensor state that depends only on (inputs, merge dtype, expert order)."""

    base: torch.Tensor | None
    inputs: list[torch.Tensor] | None = None  # linear / slerp: inputs in the merge dtype
    deltas: torch.Tensor | None = None  # task-arithmetic family: [n, *shape]
    ranks: list[torch.Tensor] | None = None
    uniforms: torch.Tensor | None = None  # [n, numel]: the tensor's uniform stream, one row per draw
    fused: FusedCache | None = None


class ResidentMerger:
    """Loads base and experts once; `merge_into` overwrites a model's parameters for each candidate.

    Re-merging in place keeps one model object alive across candidates, so evaluation engines never
    reload weights or rebuild tasks between candidates. `cache_masks` trades memory for speed: the fused
    CPU kernels' caches are small (a histogram or bucket sums per tensor and expert); the torch path's
    (other devices, mergekit's tie order or RNG) take 4 bytes per element and expert (int32 ranks for TIES,
    float32 uniforms for DARE), as much as two more bf16 copies of every expert. By default (None) those
    are kept only where they fit in half the memory the device has free besides the task vectors — a 7B
    model's three experts would need 84 GB more — and are otherwise drawn again for each candidate.
    """

    def __init__(
        self,
        base: TensorSource | None,
        experts: dict[str, TensorSource],
        num_layers: int,
        device: str | torch.device = "cpu",
        cache_masks: bool | None = None,
    ):
        self.num_layers = num_layers
        self.device = torch.device(device)
        self.cache_masks = cache_masks
        self._base_source = base
        self._sources = dict(experts)
        reference = base if base is not None else next(iter(self._sources.values()))
        self._names = list(reference.names)
        self._key: tuple | None = None
        self._prepared: dict[str, _Prepared] = {}

    @classmethod
    def from_dirs(cls, base_dir: Path | None, expert_dirs: dict[str, Path], allow_pickle: bool = False,
                  device: str | torch.device = "cpu") -> "ResidentMerger":
        """A merger over checkpoint directories (LoRA adapter directories are experts over the base)."""
        base = open_checkpoint(base_dir, allow_pickle) if base_dir is not None else None
        experts = {name: open_source(path, base, allow_pickle) for name, path in expert_dirs.items()}
        reference = base if base is not None else next(iter(experts.values()))
        return cls(base, experts, int(reference.config().get("num_hidden_layers", 1)), device)

    @torch.no_grad()
    def merge_into(self, recipe: MergeRecipe, target: dict[str, torch.Tensor]) -> None:
        """Write the merged tensors into `target` (for example a model's state_dict(), whose tensors alias its weights)."""
        method = get_method(recipe.method)
        options = method_options(recipe)
        order = tuple(e.name for e in recipe.experts)
        missing = [n for n in order if n not in self._sources]
        if missing:
            raise ValueError(f"recipe expert {missing[0]!r} is not held by this resident merger")
        if method.needs_base and self._base_source is None:
            raise ValueError(f"method {recipe.method} needs the base model, which this resident merger does not hold")
        self._prepare(method, options, order)
        params_by_group: dict[str, list[dict[str, float]]] = {}
        for name, out in target.items():
            prepared = self._prepared.get(name)
            if prepared is None:
                continue
            group = group_of(name, recipe.groups, self.num_layers)
            if group not in params_by_group:
                params_by_group[group] = expert_params(recipe, method, group)
            direct = out if _writable(out, prepared) else None
            merged = self._merge(name, prepared, method, params_by_group[group], options, direct)
            if merged is not out:
                out.copy_(merged)

    def _prepare(self, method: MergeMethod, options: dict, order: tuple[str, ...]) -> None:
        family = "delta" if method.task_arithmetic else "raw"
        key = (family, options["compute_dtype"], order, method.sparsifier if self.cache_masks is not False else None,
               options["tie_order"] if method.sparsifier == "magnitude" else None,
               (options["seed"], options["mask_rng"]) if method.sparsifier == "random" else None)
        if key == self._key:
            return
        self._prepared = {}
        cache_torch = self.cache_masks  # None: decided at the first tensor the torch path merges, if any (in practice the
        # first tensor: the path follows the device, dtype and options), so fused merges never query memory
        for name in self._names:
            experts = [self._sources[e].read(name, self.device) for e in order]
            base = self._base_source.read(name, self.device) if self._base_source is not None else None
            inputs = [t for t in (base, *experts) if t is not None]
            if not inputs[0].is_floating_point():
                continue
            dtype = options["compute_dtype"] or _promoted(experts if not method.needs_base else inputs)
            b = base.to(dtype) if base is not None else None
            if family == "raw":
                self._prepared[name] = _Prepared(b, inputs=[t.to(dtype) for t in experts])
                continue
            deltas = torch.stack([t.to(dtype) - b for t in experts])
            del experts, inputs
            prepared = _Prepared(b, deltas=deltas)
            fused = uses_fused(method, dtype, len(order), self.device, options)
            if self.cache_masks is not False and fused:
                prepared.fused = _fused_cache(name, method, deltas, options)
            elif method.sparsifier is not None and not fused:
                if cache_torch is None:
                    cache_torch = self._masks_fit(options, len(order))
                if cache_torch and method.sparsifier == "magnitude":
                    prepared.ranks = [magnitude_ranks(d, options["tie_order"]) for d in deltas]
                elif cache_torch and method.sparsifier == "random":
                    prepared.uniforms = _uniform_rows(name, len(order), b.numel(), options, self.device)
            self._prepared[name] = prepared
        self._key = key

    def _masks_fit(self, options: dict, experts: int) -> bool:
        """Whether the torch path's masks (4 bytes per element and expert) fit in MASK_CACHE_SHARE of the memory
        left once the base and the task vectors are held."""
        reference = self._base_source if self._base_source is not None else next(iter(self._sources.values()))
        numel, held = 0, 0
        for name in self._names:
            shape, dtype = reference.info(name)
            if dtype.is_floating_point:
                count = math.prod(shape)
                numel += count
                held += count * (experts + 1) * (options["compute_dtype"] or dtype).itemsize
        needed = numel * experts * 4
        free = available_bytes(self.device) - held
        if needed <= MASK_CACHE_SHARE * free:
            return True
        log.info("masks are drawn again for each candidate: caching them needs %.1f GB, and %s has %.1f GB free besides "
                 "the task vectors", needed / 1e9, self.device, max(free, 0) / 1e9)
        return False

    def _merge(self, name: str, prepared: _Prepared, method: MergeMethod, params: list[dict[str, float]], options: dict,
               out: torch.Tensor | None) -> torch.Tensor:
        if method.family == "linear" and out is not None:
            return linear_into(prepared.inputs, [p["weight"] for p in params], options["normalize"], out)
        if not method.task_arithmetic:
            return method.fn(prepared.base, prepared.inputs, params, options, name)
        assert prepared.deltas is not None and prepared.base is not None
        return merge_family(method, prepared.base, list(prepared.deltas), True, params, options, name, out,
                            prepared.ranks, prepared.uniforms, prepared.fused)


def _fused_cache(name: str, method: MergeMethod, deltas: torch.Tensor, options: dict) -> FusedCache | None:
    """TIES: each δᵢ's key histogram (bf16, 256 KiB); DARE: each δᵢ's L1 mass per uniform bucket (512 KiB),
    for every tensor: a pass over even a small tensor costs more than a lookup."""
    arrays = [kernels.as_array(d) for d in deltas]
    if method.sparsifier == "magnitude" and deltas.dtype == torch.bfloat16:
        return FusedCache(histograms=[kernels.magnitude_histogram(a) for a in arrays])
    if method.sparsifier == "random" and options["rescale"]:
        tensor_key = tensor_seed(options["seed"], name)
        return FusedCache(l1=[kernels.UniformL1(a, kernels.expert_key(tensor_key, i)) for i, a in enumerate(arrays)])
    return None


def _uniform_rows(name: str, experts: int, numel: int, options: dict, device: torch.device) -> torch.Tensor:
    """The uniforms behind DARE's masks for every expert: the seeded stream (drawn on the host, as mergekit
    does), or one counter row per expert (drawn on the device)."""
    seed = tensor_seed(options["seed"], name)
    if options["mask_rng"] == "mergekit":
        return draw_uniforms(experts * numel, torch.Generator().manual_seed(seed)).view(experts, numel).to(device)
    return torch.stack([kernels.counter_uniforms(kernels.expert_key(seed, i), numel, device) for i in range(experts)])


def available_bytes(device: torch.device) -> int:
    """Memory free for new allocations: the GPU's free memory plus what torch's allocator holds unused, or the
    host's MemAvailable."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _writable(target: torch.Tensor, prepared: _Prepared) -> bool:
    """A target the merge can write straight into: same dtype, device and layout as the merge result."""
    like = prepared.inputs[0] if prepared.inputs is not None else prepared.base
    return target.dtype == like.dtype and target.device == like.device and target.is_contiguous() and target.shape == like.shape


def _promoted(tensors: list[torch.Tensor]) -> torch.dtype:
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype
