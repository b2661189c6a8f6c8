"""A vLLM OpenAI server that this process starts, owns and stops: local runs and the test suite.

One server is started per evaluation worker and serves every candidate of it: the engine swaps weights
in place (`VLLMBackend.swap_weights`), which needs the server's development endpoints — so the server
listens on 127.0.0.1 only. On a machine without a GPU it runs the CPU build the catalogue pins
(`hack/vllm/install.sh` installs it into its own virtual environment, found by `cpu_server_python`).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests

from ...catalogue.engines import VLLM
from .transport import ServerNotReady

PYTHON_ENV = "EVOMERGE_VLLM_PYTHON"
INSTALL_HINT = "run `bash hack/vllm/install.sh` (or `make vllm`), or point EVOMERGE_VLLM_PYTHON at a python with vllm"


def cpu_server_python() -> Path:
    """The python that runs vLLM: $EVOMERGE_VLLM_PYTHON, else the CPU build's cached virtual environment."""
    explicit = os.environ.get(PYTHON_ENV)
    if explicit:
        return Path(explicit)
    assert VLLM.cpu_build is not None
    root = Path(os.environ.get("EVOMERGE_CACHE") or Path.home() / ".cache" / "evomerge")
    return root / VLLM.cpu_build.venv / "bin" / "python"


class ServerExited(ServerNotReady):
    """The server process ended on its own; the message carries the tail of its log."""


@dataclass
class VLLMServerProcess:
    """A running `vllm.entrypoints.openai.api_server` process group, with its log in `log_path`."""

    process: subprocess.Popen[bytes]
    url: str
    model_dir: Path
    log_path: Path
    started_s: float
    ready_s: float = 0.0
    _log: IO[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(cls, model_dir: Path, log_path: Path, *, max_model_len: int, dtype: str = "float32",
              python: Path | None = None, port: int | None = None, ready_timeout_s: float = 600.0,
              extra_args: tuple[str, ...] = ()) -> "VLLMServerProcess":
        """Start the server on `model_dir` and return once `/health` answers 200.

        `max_model_len` must not exceed the model's max_position_embeddings. The process runs in its own
        session, so `stop` ends vLLM's engine-core children with it; it is stopped at interpreter exit too,
        and on Linux gets SIGTERM if the thread that started it dies first (a killed run leaves no server).
        """
        python = python or cpu_server_python()
        if not python.exists():
            raise FileNotFoundError(f"no vLLM installation at {python} — {INSTALL_HINT}")
        port = port or _free_port()
        command = [
            str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
            "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype, "--max-model-len", str(max_model_len),
            "--enforce-eager", "--disable-log-stats", "--uvicorn-log-level", "warning", *extra_args,
        ]
        env = {**os.environ, **server_environment()}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("ab")
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True, preexec_fn=_die_with_parent)
        server = cls(process, f"http://127.0.0.1:{port}", Path(model_dir), log_path, started, _log=log)
        atexit.register(server.stop)
        try:
            server.wait_until_healthy(ready_timeout_s)
        except BaseException:
            server.stop()
            raise
        server.ready_s = time.perf_counter() - started
        return server

    def wait_until_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise ServerExited(f"vLLM exited with code {self.process.returncode} before it was ready; "
                                   f"last lines of {self.log_path}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() >= deadline:
                raise ServerNotReady(f"vLLM at {self.url} was not healthy within {timeout_s:g}s; last lines of "
                                     f"{self.log_path}:\n{self.log_tail()}")
            time.sleep(0.5)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            with self.log_path.open("rb") as log:
                return b"".join(deque(log, maxlen=lines)).decode(errors="replace")
        except OSError:
            return "(no log)"

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after `grace_s`; idempotent."""
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # Children of the group may outlive its leader by a moment; none must outlive stop().
        _signal_group(self.process.pid, signal.SIGKILL)
        _wait_until_group_gone(self.process.pid, grace_s)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "VLLMServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_environment() -> dict[str, str]:
    """Variables the server needs: its weight-reload endpoints, no Hub access, a small CPU KV cache."""
    return {
        "VLLM_SERVER_DEV_MODE": "1",  # /collective_rpc and /reset_prefix_cache; the server binds 127.0.0.1
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),  # GiB
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",
    }


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux prctl PR_SET_PDEATHSIG); a no-op elsewhere."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _wait_until_group_gone(pid: int, timeout_s: float) -> None:
    """Until no process of the group is left (killed children are reaped by init a moment later)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

