"""How candidates are scored: the engine and its knobs, shared by the CLI, local runs and evaluation pods."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from ...catalogue.engines import ADAPTER_ENGINES, DEFAULT_ENGINE, ENGINES, EngineName
from .transport import RetryPolicy


@dataclass(frozen=True)
class EngineOptions:
    """`engine`: a catalogue engine, in-process or served (a server at `url`); the rest tunes that engine."""

    engine: EngineName = DEFAULT_ENGINE
    # Where the model runs: the in-process engine places it there; for vLLM, "cpu" says the server is its CPU
    # build, whose LoRA scoring must run one request at a time (engines/vllm.py).
    device: str = "auto"
    batch_size: int = 8
    url: str | None = None
    # Requests in flight at once. A server batches what it has: vLLM's CPU build scored a SmolLM2-135M candidate
    # (240 requests) in ~14 s at 32 against ~27 s at 8, the same scores (64: no faster); see the README's SmolLM2 world.
    concurrency: int = 32
    timeout_s: float = 300.0
    ready_timeout_s: float = 900.0
    ready_interval_s: float = 2.0
    api_key: str | None = None
    served_model: str | None = None
    # A LoRA adapter the server hosts over its base, by name: vLLM serves it as a model (--lora-modules
    # NAME=DIR), TGI selects it per request with parameters.adapter_id (LORA_ADAPTERS=NAME=DIR).
    adapter: str | None = None
    logprobs: Literal["prompt_logprobs", "echo"] = "prompt_logprobs"
    retry_attempts: int = 5
    retry_backoff_s: float = 0.5
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine_options.engine: {self.engine!r} is not an engine — use one of {', '.join(ENGINES)}")
        if ENGINES[self.engine].served and not self.url:
            raise ValueError(f"engine_options.url: engine {self.engine} scores through a server — give its URL, "
                             "for example http://127.0.0.1:8080")
        if self.logprobs not in ("prompt_logprobs", "echo"):
            raise ValueError("engine_options.logprobs: use prompt_logprobs (vLLM) or echo (OpenAI-style servers)")
        if self.adapter is not None and not ENGINES[self.engine].hosts_adapters:
            raise ValueError("engine_options.adapter: a LoRA adapter is selected on a server that hosts adapters — use "
                             "engine " + " or ".join(ADAPTER_ENGINES))
        if self.adapter is not None and self.served_model is not None:
            raise ValueError("engine_options: set adapter or served_model, not both — vLLM serves the adapter as a model")
        if self.concurrency < 1 or self.batch_size < 1 or self.retry_attempts < 1:
            raise ValueError("engine_options: concurrency, batch_size and retry_attempts must be at least 1")

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(attempts=self.retry_attempts, backoff_s=self.retry_backoff_s)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> "EngineOptions":
        """Build from a plain dict (CLI flags, JSON), naming any unknown key."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"engine_options: unknown key(s) {', '.join(unknown)} — known: {', '.join(sorted(known))}")
        return cls(**values)
