"""Engines: where the merged model runs while lm-eval scores it.

`transformers` (resident.py) merges and scores in this process; the served engines (catalogue/engines.py)
score a model served elsewhere, through `ServerLM` (server.py) and a protocol backend (tgi.py, vllm.py,
sglang.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ...catalogue.engines import ENGINES
from .options import EngineOptions

# Each served engine's protocol client, registered by its module (the catalogue's `module`) when imported.
BACKENDS: dict[str, Any] = {}

if TYPE_CHECKING:
    from .server import ServerLM


def register(name: str):
    """Class decorator: the protocol client of the catalogue's served engine `name`."""

    def wrap(cls):
        cls.name = name
        BACKENDS[name] = cls
        return cls

    return wrap


def make_server_lm(options: EngineOptions, tokenizer: Any, greedy_tasks: frozenset[str] | None = None) -> "ServerLM":
    """An lm-eval model over the served engine's server at options.url; waits until the server is ready.

    Imports lm-eval only when called: the options type must stay importable in the slim operator image.
    """
    from .server import ServerLM

    if not ENGINES[options.engine].served:
        raise ValueError(f"engine {options.engine!r} runs in-process; make_server_lm is for the served engines")
    importlib.import_module(f"{__name__}.{ENGINES[options.engine].module}")  # registers its client
    backend = BACKENDS[options.engine](options, tokenizer)
    return ServerLM(backend, tokenizer, options.concurrency, greedy_tasks)
