"""One server per evaluation worker: candidates are merged here and handed to the running server in place.

`SwappingWorker` is the one implementation of "merge → write → swap → score → retry once", for a local run
and an evaluation pod alike. It holds the experts resident (ResidentMerger, on the host: an accelerator
belongs to the server) and the live merge as host tensors. Per candidate it merges, writes the weights to a
fresh folder on a memory-backed file system (/dev/shm locally, the pod's memory emptyDir), has the server
reread them in place (the backend's `swap_weights`), removes the previous folder and scores through the
server. Where the server comes from, and what its death means, is a `ServerHandle`:

- `OwnedServer` (local runs, tests, benchmarks): a vLLM process this worker starts on the base and stops;
  a dead one is replaced by a new start.
- `SidecarServer` (evaluation pods): the pod's native sidecar, started on the batch's first candidate (the
  pod's merge step wrote it); the kubelet restarts a dead one, and the worker waits until it answers.

Given the candidate that comes next (`then`), the worker merges and writes it while the server scores the
current one: the host copy is free once a candidate's folder is written, and the server reads the folder,
so only the in-place reload stays between two scorings.

Either way a server that dies mid-candidate costs that candidate one more try on a server serving its
start folder again: the worker swaps the candidate back in and scores it again; the candidates before keep
their scores, and only a second failure of the same candidate fails it. `ServedEngine` is the worker seen
through one set of objectives (the search's, the held-out ones), so a run's search and its held-out scoring
share one server.

A reload of other shapes would kill vLLM's engine while /health still answers, so every folder is checked
against the served checkpoint's safetensors headers before it is sent (`WrongShapes`). Data-flow candidates
change the layer count: they are scored in-process (`ResidentEngine`), which `runner.local.make_engine`
chooses for them, and refused here.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, TypeVar

import requests

from ...catalogue.engines import VLLM
from ...merge.recipe import MergeRecipe
from ...models.checkpoint import open_checkpoint
from ...spec.merge_search import Objective
from ..cache import ScoreCache, evaluation_context, score_key
from ..items import ItemScores
from ..quiet import quiet_libraries
from ..tasks import TaskSuite
from . import make_server_lm
from .options import EngineOptions
from .server import ServerLM
from .transport import ServerError
from .vllm_process import VLLMServerProcess

log = logging.getLogger(__name__)
WEIGHTS_FILE = "model.safetensors"
MAX_MODEL_LEN = 4096  # at most: the model's max_position_embeddings caps it; scoring prompts are short
TMPFS = Path("/dev/shm")
ATTEMPTS_PER_CANDIDATE = 2  # the first try, and one more on a server serving its start folder again

T = TypeVar("T")
StartServer = Callable[[Path, Path, int, str], VLLMServerProcess]  # (model dir, log file, max model len, dtype) -> healthy


class WrongShapes(ValueError):
    """A folder handed to the server has other tensors or shapes than the served checkpoint."""


@dataclass
class WorkerTimings:
    """Where the worker's time went, summed over the candidates it scored (read by benchmarks/served_eval.py).

    `merge_s` and `write_s` count every merge and weights write, also those done ahead while the previous
    candidate was scored; `ready_s` is what the candidates waited for their weights folder (merge and write
    not hidden behind a scoring), `swap_s` the in-place reloads.
    """

    server_starts: int = 0
    start_s: float = 0.0
    candidates: int = 0
    cache_hits: int = 0
    retried: int = 0
    merges: int = 0
    merges_ahead: int = 0
    merge_s: float = 0.0
    write_s: float = 0.0
    ready_s: float = 0.0
    swap_s: float = 0.0
    score_s: float = 0.0


class ServerHandle(Protocol):
    """Where a worker's server comes from and what its death means (see the module docstring)."""

    served_dir: Path  # the folder a (re)started server serves

    def connect(self) -> str:
        """The URL of a server that is up (starting one where this handle owns it)."""
        ...

    def dead(self, error: BaseException) -> bool:
        """Whether `error`, raised while the server had the candidate, means the server died."""
        ...

    def recover(self) -> None:
        """After a death: the next `connect` reaches a server serving `served_dir` again."""
        ...

    def close(self) -> None: ...


@dataclass
class OwnedServer:
    """A vLLM server this process starts on `served_dir`, replaces when it dies and stops on close."""

    served_dir: Path
    log_dir: Path
    max_model_len: int
    dtype: str
    start_server: StartServer | None = None
    process: VLLMServerProcess | None = None
    starts: int = 0

    def connect(self) -> str:
        if self.process is None:
            start = self.start_server or _start_default
            self.process = start(self.served_dir, self.log_dir / f"vllm-{self.starts}.log", self.max_model_len, self.dtype)
            self.starts += 1
        return self.process.url

    def dead(self, error: BaseException) -> bool:
        if self.process is None:
            return False  # it never started: the error is the start's, not a death
        if not self.process.alive:
            return True
        try:
            return requests.get(self.process.url + "/health", timeout=10).status_code != 200
        except requests.RequestException:
            return True

    def recover(self) -> None:
        self.close()

    def close(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@dataclass
class SidecarServer:
    """The pod's server at `url` (a native sidecar the kubelet restarts), started on the merge step's `served_dir`."""

    served_dir: Path
    url: str

    def connect(self) -> str:
        return self.url  # make_server_lm waits until it answers, a restarted one included

    def dead(self, error: BaseException) -> bool:
        return isinstance(error, ServerError)  # requests that kept failing, or a server that went away

    def recover(self) -> None:
        """Nothing to do: the kubelet restarts the sidecar on the start folder."""

    def close(self) -> None:
        """The sidecar is the pod's: it stops when the scorer ends."""


class SwappingWorker:
    """The experts, the live merge and one server handle; see the module docstring. Close it (or use `with`).

    `options` says how to talk to the server (engine, batch size, timeouts, a hosted adapter); its url comes
    from the handle. The experts are read at the first merge: a batch of one candidate never loads them.
    `scratch` is where the weights folders go (a fresh temporary folder on /dev/shm when None).
    """

    def __init__(self, handle: ServerHandle, options: EngineOptions, base_dir: Path | None, expert_dirs: dict[str, Path],
                 allow_pickle: bool = False, scratch: Path | None = None):
        self.handle, self.options = handle, options
        self.base_dir, self.expert_dirs, self.allow_pickle = base_dir, dict(expert_dirs), allow_pickle
        self.served_dir = handle.served_dir
        self._served_shapes: dict[str, tuple[int, ...]] | None = None
        self.owns_scratch = scratch is None
        self.scratch = Path(tempfile.mkdtemp(prefix="evomerge-weights-", dir=TMPFS if TMPFS.is_dir() else None)) \
            if scratch is None else Path(scratch)
        self.timings = WorkerTimings()
        self.merger: Any = None
        self.target: dict[str, Any] = {}
        self.lm: ServerLM | None = None
        self.serving: Path | None = None  # the folder the connected server took last
        self.tokenizer: Any = None
        self._swaps = 0
        self._ahead: tuple[str, Path, Future[None]] | None = None  # (recipe digest, its folder, its merge) while scoring
        self._background: ThreadPoolExecutor | None = None

    @classmethod
    def local(cls, base_dir: Path | None, expert_dirs: dict[str, Path], log_dir: Path, allow_pickle: bool = False,
              start_server: StartServer | None = None) -> "SwappingWorker":
        """A worker over a vLLM server it starts on the base (or the first expert) itself: local runs."""
        served = base_dir if base_dir is not None else next(iter(expert_dirs.values()))
        checkpoint = open_checkpoint(served, allow_pickle)
        max_model_len = min(int(checkpoint.config().get("max_position_embeddings") or MAX_MODEL_LEN), MAX_MODEL_LEN)
        handle = OwnedServer(served, log_dir, max_model_len, _dtype(checkpoint), start_server)
        # The server picks its port when it starts: its url replaces this loopback one at every connect.
        return cls(handle, EngineOptions(engine=VLLM.name, url="http://127.0.0.1"), base_dir, expert_dirs, allow_pickle)

    # ---- one candidate -------------------------------------------------------------------------------------
    def score(self, recipe: MergeRecipe, suite: TaskSuite, run: Callable[[TaskSuite, ServerLM], T] = TaskSuite.run,
              *, served: bool = False, then: MergeRecipe | None = None) -> T:
        """Merge, hand over and score one candidate (`run`: the suite's aggregates, or with `TaskSuite.run_items` its
        per-item results too). `served`: the server already serves this candidate (a pod's first, written by
        its merge step); `then`: the candidate scored next, merged and written while this one is scored. On a
        dead server, a server serving the start folder gets the candidate once more."""
        started = time.perf_counter()
        wanted = self.served_dir if served else self._folder_of(recipe)
        self.timings.ready_s += time.perf_counter() - started
        try:
            for attempt in range(ATTEMPTS_PER_CANDIDATE):
                try:
                    lm = self.connect(suite)
                    if self.serving != wanted:
                        self.hand_over(wanted)
                    if then is not None and then.layer_path is None and self._ahead is None:
                        self._background = self._background or ThreadPoolExecutor(1, thread_name_prefix="evomerge-merge")
                        folder = self._new_folder()
                        self._ahead = (then.digest(), folder, self._background.submit(self._merge_into, then, folder))
                        self.timings.merges_ahead += 1
                    started = time.perf_counter()
                    result = run(suite, lm)
                    self.timings.score_s += time.perf_counter() - started
                    return result
                except Exception as error:
                    if attempt == ATTEMPTS_PER_CANDIDATE - 1 or not self.handle.dead(error):
                        raise
                    log.warning("the server failed while it had the candidate (%s); waiting for a server serving "
                                "%s again, then handing it the candidate again", error, self.served_dir)
                    self.timings.retried += 1
                    self._disconnect()
                    self.handle.recover()
            raise AssertionError("unreachable")
        finally:
            self._drop_folders(keep=self.serving)

    def _folder_of(self, recipe: MergeRecipe) -> Path:
        """The candidate's weights folder: the one merged ahead for it, else merged now (after any merge ahead for
        another candidate ends: both write the one host copy)."""
        if self._ahead is not None:
            digest, folder, merge = self._ahead
            self._ahead = None
            if digest == recipe.digest():
                merge.result()
                return folder
            try:
                merge.result()
            except Exception:  # noqa: BLE001 - that candidate was not asked for after all; its error is moot
                pass
            shutil.rmtree(folder, ignore_errors=True)
        folder = self._new_folder()
        self._merge_into(recipe, folder)
        return folder

    def hand_over(self, folder: Path) -> None:
        """Have the server serve the checkpoint in `folder` from now on, without a restart; a folder of other
        shapes is refused before it is sent (it would kill vLLM's engine while /health still answers)."""
        assert self.lm is not None, "connect first"
        if folder != self.served_dir:
            self._check_shapes(folder)
        started = time.perf_counter()
        self.lm.backend.swap_weights(folder)  # type: ignore[attr-defined]
        self.timings.swap_s += time.perf_counter() - started
        self.serving = folder

    # ---- parts ---------------------------------------------------------------------------------------------
    def _new_folder(self) -> Path:
        self._swaps += 1
        return self.scratch / f"{self.served_dir.name}-{self._swaps}"

    def _merge_into(self, recipe: MergeRecipe, folder: Path) -> None:
        """The candidate merged into the host copy and written to `folder`."""
        from safetensors.torch import save_file

        if recipe.layer_path is not None:
            raise ValueError("recipe has a layerPath: data-flow candidates change the layer count, which an in-place "
                             "reload cannot take — they are scored in-process (engine transformers)")
        started = time.perf_counter()
        self.load_experts()
        self.merger.merge_into(recipe, self.target)
        self.timings.merges += 1
        merged = time.perf_counter()
        self.timings.merge_s += merged - started
        folder.mkdir(exist_ok=True)
        save_file(self.target, str(folder / WEIGHTS_FILE))
        self.timings.write_s += time.perf_counter() - merged

    def load_experts(self) -> None:
        """The experts, and a host copy of the served checkpoint's tensors (names and dtypes) to merge into."""
        if self.merger is not None:
            return
        from ...merge.resident import ResidentMerger

        self.merger = ResidentMerger.from_dirs(self.base_dir, self.expert_dirs, self.allow_pickle, "cpu")
        served = open_checkpoint(self.served_dir, self.allow_pickle)
        self.target = {name: served.read(name, "cpu").clone() for name in served.names}

    def _check_shapes(self, folder: Path) -> None:
        """WrongShapes unless `folder`'s safetensors headers name the served tensors with the served shapes."""
        if self._served_shapes is None:
            self._served_shapes = _shapes(self.served_dir, self.allow_pickle)
        served, handed = self._served_shapes, _shapes(folder, False)
        if handed == served:
            return
        missing = sorted(set(served) - set(handed))
        extra = sorted(set(handed) - set(served))
        changed = [f"{n} is {list(handed[n])}, served {list(s)}" for n, s in sorted(served.items())
                   if n in handed and handed[n] != s]
        what = "; ".join(part for part in (
            f"missing {', '.join(missing[:3])}" if missing else "", f"extra {', '.join(extra[:3])}" if extra else "",
            ", ".join(changed[:3])) if part)
        raise WrongShapes(f"{folder}: not the served checkpoint's shapes ({what}) — an in-place reload takes only a "
                          f"checkpoint of {self.served_dir}'s architecture and shapes; candidates of another shape "
                          "(data-flow paths, other experts) need their own server start or the in-process engine")

    def connect(self, suite: TaskSuite) -> ServerLM:
        """A client of a server that is up, for `suite`'s tasks (a pod connects before its first candidate, so a
        server that never comes up fails the whole batch once rather than each candidate in turn)."""
        if self.lm is None:
            from transformers import AutoTokenizer

            started = time.perf_counter()
            url = self.handle.connect()
            if self.tokenizer is None:
                self.tokenizer = AutoTokenizer.from_pretrained(self.served_dir, trust_remote_code=False)
            self.lm = make_server_lm(replace(self.options, url=url), self.tokenizer)
            self.timings.server_starts += 1
            self.timings.start_s += time.perf_counter() - started
            self.serving = self.served_dir
        self.lm.greedy_tasks = suite.greedy_tasks
        return self.lm

    def _disconnect(self) -> None:
        if self.lm is not None:
            self.lm.close()
            self.lm = None
            self.serving = None

    def _drop_folders(self, keep: Path | None) -> None:
        """Every weights folder but the one the server serves and the one being merged ahead (the server's
        start folder is never one of them)."""
        ahead = self._ahead[1] if self._ahead is not None else None
        for folder in self.scratch.glob(f"{self.served_dir.name}-*"):
            if folder not in (keep, ahead, self.served_dir):
                shutil.rmtree(folder, ignore_errors=True)

    # ---- lifetime ------------------------------------------------------------------------------------------
    def engine(self, objectives: Sequence[Objective], include_paths: Sequence[str] = (), *, seed: int = 0,
               cache: ScoreCache | None = None) -> "ServedEngine":
        models = [d for d in (self.base_dir, *self.expert_dirs.values()) if d is not None]
        context = evaluation_context(objectives, seed, self.options.engine, list(dict.fromkeys(models)), include_paths)
        return ServedEngine(self, TaskSuite.build(objectives, include_paths, seed), context, cache)

    @property
    def server(self) -> VLLMServerProcess | None:
        """The process of an owned server (None for a pod's sidecar, or before the first candidate)."""
        return getattr(self.handle, "process", None)

    def stop_server(self) -> None:
        """Disconnect and stop an owned server; the next candidate starts a new one."""
        self._disconnect()
        self.handle.recover()

    def close(self) -> None:
        """Stop an owned server and remove the weights folders; idempotent."""
        if self._background is not None:
            self._background.shutdown(wait=True)  # a merge ahead writes into the scratch folder
            self._background, self._ahead = None, None
        self._disconnect()
        self.handle.close()
        if self.owns_scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
        else:
            self._drop_folders(keep=None)

    def __enter__(self) -> "SwappingWorker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shapes(folder: Path, allow_pickle: bool) -> dict[str, tuple[int, ...]]:
    return {name: shape for name, (shape, _) in open_checkpoint(folder, allow_pickle).shapes().items()}


def _dtype(checkpoint: Any) -> str:
    """The checkpoint's own dtype, as the in-process engine loads it: vLLM's "auto" would run a float32 checkpoint
    in 16 bits, and its scores would no longer be the in-process engine's."""
    for name in checkpoint.names:
        dtype = checkpoint.info(name)[1]
        if dtype.is_floating_point:
            return str(dtype).removeprefix("torch.")
    return "auto"


def _start_default(model_dir: Path, log_file: Path, max_model_len: int, dtype: str) -> VLLMServerProcess:
    return VLLMServerProcess.start(model_dir, log_file, max_model_len=max_model_len, dtype=dtype)


@dataclass
class ServedEngine:
    """A `SwappingWorker` scoring one set of objectives; the same `score(recipe)` as ResidentEngine."""

    worker: SwappingWorker
    suite: TaskSuite
    context: str
    cache: ScoreCache | None = None

    def __post_init__(self) -> None:
        quiet_libraries()

    @property
    def timings(self) -> WorkerTimings:
        return self.worker.timings

    def score(self, recipe: MergeRecipe, then: MergeRecipe | None = None) -> dict[str, float]:
        """The objectives' metrics for `recipe`: from the cache when scored before, else merged, swapped in and
        scored (while `then`, the candidate scored next, is merged)."""
        self.worker.timings.candidates += 1
        digest = recipe.digest()
        key = score_key(digest, self.context)
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                self.worker.timings.cache_hits += 1
                return cached
        scores = self.worker.score(recipe, self.suite, then=then)
        if self.cache is not None:
            self.cache.put(key, scores, digest, self.context)
        return scores

    def score_items(self, recipe: MergeRecipe) -> tuple[dict[str, float], ItemScores]:
        """The objectives' metrics and per-item results for `recipe` (never cached: the cache keeps aggregates)."""
        return self.worker.score(recipe, self.suite, TaskSuite.run_items)
