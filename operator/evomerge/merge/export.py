"""Exporting a recipe as a standard Hugging Face checkpoint, streaming tensor by tensor.

Every output tensor is planned from the input headers (name, dtype, shape) before any math runs, which
fixes the shard layout; then each tensor is mapped in place from every input, merged into a reused
buffer, and written straight to its offset in its shard by a writer thread while the next one is
computed. Peak memory is about one tensor per input plus the merge's temporaries — never a whole
model or a whole shard.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import queue
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Mapping

import torch

from ..models.checkpoint import CheckpointError, TensorSource, check_compatible
from ..models.safetensors_io import PlannedTensor, ShardedWriter
from .apply import RecipeError, expert_params, merge_tensor, method_options
from .dataflow import check_foldable, cumulative_scales, fold, layer_of, path_config
from .layer_path import BASE, MERGED, LayerPathError
from .methods import get_method
from .recipe import MergeRecipe

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json", "merges.txt", "generation_config.json", "chat_template.jinja", "added_tokens.json",
)
DEFAULT_SHARD_BYTES = 2 * 1024**3
RECIPE_FILE = "evomerge_recipe.json"
MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux 5.14+; the mmap module may not name it
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


@dataclass(frozen=True)
class _Job:
    planned: PlannedTensor
    produce: Callable[[], torch.Tensor]


def export_merge(
    recipe: MergeRecipe,
    base: TensorSource | None,
    experts: Mapping[str, TensorSource],
    out_dir: Path,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the merged model (or layer path) as sharded safetensors with config and tokenizer.

    `experts` maps names to inputs: the recipe's experts and, for a layer path, its other models.
    All inputs are checked (presence, architecture, shapes, dtypes, parameters) before anything is written.
    `progress(bytes written, bytes in all)` is called from the writer thread after each tensor.
    """
    out_dir = Path(out_dir)
    buffers = _ExportMemory()
    options = {**method_options(recipe, tie_order="mergekit"), "workspace": buffers}
    if recipe.layer_path is None:
        reference, config, jobs = _merge_jobs(recipe, base, experts, options, buffers)
    else:
        reference, config, jobs = _path_jobs(recipe, base, experts, options, buffers)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = ShardedWriter(out_dir, [j.planned for j in jobs], shard_bytes)
    try:
        _stream(jobs, writer, buffers, progress)
    finally:
        buffers.close()
    dtypes = {j.planned.dtype for j in jobs if j.planned.dtype.is_floating_point}
    if len(dtypes) == 1:
        config = _with_dtype(config, dtypes.pop())
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    _copy_tokenizer(reference, out_dir)
    (out_dir / RECIPE_FILE).write_text(json.dumps(recipe.to_dict(), indent=2))
    return out_dir


class _Mapped:
    """A tensor viewed in place in its file's private mapping: reading it copies nothing."""

    def __init__(self, tensor: torch.Tensor, address: int, start: int, nbytes: int) -> None:
        self.tensor, self._address, self._start, self._end = tensor, address, start, start + nbytes

    def drop_pages(self) -> None:
        """Unmap the pages only this tensor covers, so resident memory follows the tensors in flight.

        Pages shared with a neighbour stay (at most two per tensor): dropping a private page would also
        discard any write the merge made to the neighbour's part of it.
        """
        first = -(-self._start // mmap.PAGESIZE) * mmap.PAGESIZE
        last = self._end // mmap.PAGESIZE * mmap.PAGESIZE
        if last > first:
            _madvise(self._address + first, last - first, mmap.MADV_DONTNEED)


class _ExportMemory:
    """Memory for the exporter's tensors: inputs mapped in place, results and temporaries in reused buffers.

    `map` copies nothing: the tensor is a view of a private (copy-on-write) mapping of its file, so a merge
    that wrote into it still could not change the file; its pages are unmapped once the merge is done with
    it (`release`, or when the merge returns) or, when the result is that view, once the writer is. `scratch`
    lends the merge memory for its result and temporaries (it is the merge's `workspace`): reused buffers,
    since fresh allocations cost a page fault per 4 KiB page, as much as the merge itself. A buffer the merged
    tensor uses stays busy until the writer has written it; the others are free once the merge returns. Free
    buffers too small for the next request are dropped, so memory follows the tensors in flight (one per
    input, plus the one being written) and never grows past it.
    """

    def __init__(self) -> None:
        self._free: list[torch.Tensor] = []
        self._taken: list[torch.Tensor | _Mapped] = []
        self._lock = threading.Lock()
        self._files: dict[Path, BinaryIO] = {}
        self._mappings: dict[Path, tuple[mmap.mmap, int]] = {}  # file -> its private mapping, and where it starts

    def scratch(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        nbytes = numel * dtype.itemsize
        return self._take(nbytes)[:nbytes].view(dtype)

    def release(self, tensor: torch.Tensor) -> None:
        pointer = tensor.untyped_storage().data_ptr()
        done = [b for b in self._taken if isinstance(b, _Mapped) and _storage(b) == pointer]
        for mapped in done:
            mapped.drop_pages()
            self._taken.remove(mapped)

    def map(self, source: TensorSource, name: str) -> torch.Tensor:
        info = getattr(source, "infos", {}).get(name)
        if info is None or info.nbytes == 0:
            return source.read(name)
        if info.file not in self._mappings:
            mapping = mmap.mmap(self._file(info.file).fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
            self._mappings[info.file] = mapping, _address(mapping)
        mapping, address = self._mappings[info.file]
        if info.start + info.nbytes > len(mapping):
            raise CheckpointError(f"{info.file}: tensor {name} ends past the end of the file — the file is truncated")
        _populate(address, info.start, info.nbytes)
        view = torch.frombuffer(mapping, dtype=torch.uint8, count=info.nbytes, offset=info.start)
        self._taken.append(_Mapped(view, address, info.start, info.nbytes))
        return view.view(info.dtype).view(info.shape)

    def close(self) -> None:
        for mapping, _ in self._mappings.values():
            try:
                mapping.close()
            except BufferError:  # a view is still referenced (an error's traceback): unmapped when it goes
                pass
        self._mappings.clear()
        for handle in self._files.values():
            handle.close()
        self._files.clear()

    def settle(self, result: torch.Tensor) -> list[torch.Tensor | _Mapped]:
        """After one merge: free the buffers `result` does not use; return those it does (busy until written)."""
        pointer = result.untyped_storage().data_ptr()
        busy = [b for b in self._taken if _storage(b) == pointer]
        self.written([b for b in self._taken if _storage(b) != pointer])
        self._taken = []
        return busy

    def written(self, buffers: list[torch.Tensor | _Mapped]) -> None:
        """The writer is done with a result's buffers: unmap the mapped ones, reuse the others."""
        for mapped in (b for b in buffers if isinstance(b, _Mapped)):
            mapped.drop_pages()
        with self._lock:
            self._free.extend(b for b in buffers if isinstance(b, torch.Tensor))

    def _file(self, path: Path) -> BinaryIO:
        if path not in self._files:
            self._files[path] = open(path, "rb", buffering=0)  # raw: no read-ahead copy
        return self._files[path]

    def _take(self, nbytes: int) -> torch.Tensor:
        with self._lock:
            fitting = [i for i, b in enumerate(self._free) if b.numel() >= nbytes]
            if fitting:
                buffer = self._free.pop(min(fitting, key=lambda i: self._free[i].numel()))
            else:
                self._free.clear()
                buffer = torch.empty(nbytes, dtype=torch.uint8)
        self._taken.append(buffer)
        return buffer


def _populate(address: int, start: int, nbytes: int) -> None:
    """Map a tensor's pages in one call: faulting them in from the merge's threads costs several times more."""
    first = start // mmap.PAGESIZE * mmap.PAGESIZE
    try:
        _madvise(address + first, start + nbytes - first, MADV_POPULATE_READ)
    except OSError:  # kernels before 5.14: the pages fault in on first touch instead
        pass


def _madvise(address: int, length: int, advice: int) -> None:
    """madvise(2) without the GIL (the mmap module holds it), so the writer thread runs meanwhile."""
    if _LIBC.madvise(address, length, advice) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def _address(mapping: mmap.mmap) -> int:
    """Where the mapping starts; the ctypes view that tells it is dropped at once, so `close` still works."""
    view = ctypes.c_char.from_buffer(mapping)
    address = ctypes.addressof(view)
    del view
    return address


def _storage(buffer: torch.Tensor | _Mapped) -> int:
    return (buffer.tensor if isinstance(buffer, _Mapped) else buffer).untyped_storage().data_ptr()


def _stream(jobs: list[_Job], writer: ShardedWriter, buffers: _ExportMemory,
            progress: Callable[[int, int], None] | None = None) -> None:
    """Compute tensors on this thread, write them on another: the write of one overlaps the next's math.

    At most one finished tensor is alive besides the one being computed (the slot is taken before a
    tensor is produced and given back when its write ends), so memory stays at one tensor per input.
    """
    pending: queue.Queue = queue.Queue()
    slot = threading.Semaphore(1)
    failure: list[BaseException] = []
    total = sum(job.planned.nbytes for job in jobs)
    written = 0

    def write_all() -> None:
        nonlocal written
        try:
            _remove_old_shards(writer)
        except OSError as exc:  # surfaced on the main thread below; the loop still frees every slot
            failure.append(exc)
        while (item := pending.get()) is not None:
            try:
                if not failure:
                    writer.write(item[0], item[1])
                    written += item[1].numel() * item[1].element_size()
                    if progress is not None:
                        progress(written, total)
            except BaseException as exc:  # surfaced on the main thread below
                failure.append(exc)
            finally:
                buffers.written(item[2])
                del item
                slot.release()

    thread = threading.Thread(target=write_all, name="evomerge-writer", daemon=True)
    thread.start()
    try:
        for job in jobs:
            tensor = job.produce()
            busy = buffers.settle(tensor)
            slot.acquire()
            if failure:
                break
            pending.put((job.planned.name, tensor, busy))
            del tensor, busy
    finally:
        pending.put(None)
        thread.join()
    if failure:
        writer.abort()
        raise failure[0]
    writer.finish()


def _remove_old_shards(writer: ShardedWriter) -> None:
    """Delete a previous export's shards before writing over them, while the first tensor is computed.

    Truncating a cached file on open frees its pages on the writer's path; deleting them first costs
    less, and the writer thread is idle until the first tensor is merged.
    """
    for shard in range(len(writer.shards)):
        writer.out_dir.joinpath(writer.file_name(shard)).unlink(missing_ok=True)


def _input_reference(recipe: MergeRecipe, base: TensorSource | None, experts: Mapping[str, TensorSource]) -> TensorSource:
    method = get_method(recipe.method)
    if method.needs_base and base is None:
        raise RecipeError(f"method {recipe.method} merges task vectors and needs the base checkpoint")
    missing = [e.name for e in recipe.experts if e.name not in experts]
    if missing:
        raise RecipeError(f"recipe expert {missing[0]!r} has no checkpoint — pass it in `experts`")
    if method.one_expert and len(recipe.experts) != 1:
        raise RecipeError(f"{method.name} interpolates between the base and one expert; the recipe has {len(recipe.experts)}")
    if not recipe.experts:
        raise RecipeError("the recipe names no experts to merge")
    return base if base is not None else experts[recipe.experts[0].name]


def validate_merge_inputs(recipe: MergeRecipe, base: TensorSource | None, experts: Mapping[str, TensorSource]) -> TensorSource:
    """Everything that can be wrong with a recipe's inputs, found before any tensor is read."""
    reference = _input_reference(recipe, base, experts)
    method = get_method(recipe.method)
    others = {e.name: experts[e.name] for e in recipe.experts if experts[e.name] is not reference}
    check_compatible(reference, others, recipe.options.get("dtype"))
    for group in recipe.groups:
        expert_params(recipe, method, group)
    return reference


def _merge_jobs(
    recipe: MergeRecipe, base, experts, options: dict, buffers: _ExportMemory
) -> tuple[TensorSource, dict, list[_Job]]:
    reference = validate_merge_inputs(recipe, base, experts)
    method = get_method(recipe.method)
    num_layers = int(reference.config().get("num_hidden_layers", 1))
    inputs = [experts[e.name] for e in recipe.experts]
    jobs = []
    for name in reference.names:
        shape, dtype = reference.info(name)
        dtypes = [src.info(name)[1] for src in ([base] if method.needs_base else []) + inputs]
        out = _output_dtype(options, dtypes)
        produce = _merge_producer(recipe, name, base, inputs, num_layers, options, buffers)
        jobs.append(_Job(PlannedTensor(name, out, shape), produce))
    return reference, reference.config(), jobs


def _merge_producer(recipe, name, base, inputs, num_layers, options, buffers: _ExportMemory) -> Callable[[], torch.Tensor]:
    method = get_method(recipe.method)

    def produce() -> torch.Tensor:
        first = buffers.map(base, name) if base is not None and method.needs_base else None
        return merge_tensor(recipe, name, first, [buffers.map(src, name) for src in inputs], num_layers, options)

    return produce


def _output_dtype(options: dict, dtypes: list[torch.dtype]) -> torch.dtype:
    if not dtypes[0].is_floating_point:
        return dtypes[0]
    if options["out_dtype"] is not None:
        return options["out_dtype"]
    if options["compute_dtype"] is not None:
        return options["compute_dtype"]
    out = dtypes[0]
    for dtype in dtypes[1:]:
        out = torch.promote_types(out, dtype)
    return out


def _path_jobs(
    recipe: MergeRecipe, base, experts, options: dict, buffers: _ExportMemory
) -> tuple[TensorSource, dict, list[_Job]]:
    path = recipe.layer_path
    assert path is not None
    sources: dict[str, TensorSource | None] = {}
    for model in path.models:
        if model == MERGED:
            sources[model] = None
        elif model == BASE:
            if base is None:
                raise LayerPathError("layer path uses the base model, but no base checkpoint was given")
            sources[model] = base
        elif model in experts:
            sources[model] = experts[model]
        else:
            raise LayerPathError(f"layer path model {model!r} has no checkpoint — pass it in `experts` (uri: {path.sources.get(model)})")
    merged_ref = validate_merge_inputs(recipe, base, experts) if MERGED in sources else None
    views = {m: (merged_ref if s is None else s) for m, s in sources.items()}
    reference = views[path.embed_model]
    assert reference is not None
    for model, view in views.items():
        if view is reference:
            continue
        if _same_depth(reference, view):
            check_compatible(reference, {model: view}, recipe.options.get("dtype"))
        else:
            _check_width(reference, view, model)
    configs = {m: v.config() for m, v in views.items()}
    path.validate({m: int(c.get("num_hidden_layers", 0)) for m, c in configs.items()})
    suffixes = check_foldable(reference.names, configs[path.embed_model].get("model_type"))
    num_layers = int(configs[path.embed_model].get("num_hidden_layers", 1))
    inputs = [experts[e.name] for e in recipe.experts] if MERGED in sources else []
    method = get_method(recipe.method)

    def source_tensor(model: str, name: str) -> Callable[[], torch.Tensor]:
        if sources[model] is None:
            return _merge_producer(recipe, name, base, inputs, num_layers, options, buffers)
        src = sources[model]

        def read() -> torch.Tensor:
            tensor = src.read(name)
            if options["compute_dtype"] is not None and tensor.is_floating_point():
                tensor = tensor.to(options["compute_dtype"])
            return tensor

        return read

    def planned_dtype(model: str, name: str) -> torch.dtype:
        if sources[model] is None:
            pool = ([base] if method.needs_base else []) + inputs
            return _output_dtype(options, [s.info(name)[1] for s in pool])
        return _output_dtype(options, [views[model].info(name)[1]])

    jobs: list[_Job] = []
    for name in reference.names:
        if layer_of(name) is None:
            jobs.append(_Job(PlannedTensor(name, planned_dtype(path.embed_model, name), reference.info(name)[0]),
                             _cast(source_tensor(path.embed_model, name), options)))
    prefix = next(p[1] for p in map(layer_of, reference.names) if p is not None)
    for j, (hop, cumulative) in enumerate(zip(path.hops, cumulative_scales(path))):
        for suffix in suffixes:
            src_name = f"{prefix}{hop.layer}.{suffix}"
            out_name = f"{prefix}{j}.{suffix}"
            produce = source_tensor(hop.model, src_name)
            jobs.append(_Job(
                PlannedTensor(out_name, planned_dtype(hop.model, src_name), views[hop.model].info(src_name)[0]),
                _cast(lambda produce=produce, suffix=suffix, c=cumulative: fold(suffix, produce(), c), options),
            ))
    return reference, path_config(configs[path.embed_model], path, configs), jobs


def _cast(produce: Callable[[], torch.Tensor], options: dict) -> Callable[[], torch.Tensor]:
    if options["out_dtype"] is None:
        return produce
    return lambda: (lambda t: t.to(options["out_dtype"]) if t.is_floating_point() else t)(produce())


def _same_depth(a: TensorSource, b: TensorSource) -> bool:
    return a.config().get("num_hidden_layers") == b.config().get("num_hidden_layers")


def _check_width(reference: TensorSource, other: TensorSource, model: str) -> None:
    """Path models of different depth must still agree on every per-layer tensor shape."""
    ref_layer = {p[2]: reference.info(n)[0] for n in reference.names if (p := layer_of(n)) is not None and p[0] == 0}
    for n in other.names:
        parts = layer_of(n)
        if parts is not None and parts[0] == 0 and ref_layer.get(parts[2]) not in (None, other.info(n)[0]):
            raise CheckpointError(
                f"path model {model!r}: layer tensor {parts[2]} has shape {list(other.info(n)[0])}, "
                f"model A has {list(ref_layer[parts[2]])} — path layers must share the hidden sizes"
            )


def _with_dtype(config: dict, dtype: torch.dtype) -> dict:
    name = str(dtype).removeprefix("torch.")
    out = dict(config)
    if "torch_dtype" in out:
        out["torch_dtype"] = name
    out["dtype"] = name
    return out


def _copy_tokenizer(reference: TensorSource, out_dir: Path) -> None:
    root = getattr(reference, "base", reference).root
    for file in TOKENIZER_FILES:
        if (root / file).exists():
            shutil.copy2(root / file, out_dir / file)
