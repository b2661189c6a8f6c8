"""Engines: where the merged model runs while lm-eval scores it.

`transformers` (resident.py) merges and scores in this process; `tgi` and `vllm` score a model served
elsewhere, through `ServerLM` (server.py) and a protocol backend (tgi.py, vllm.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .options import EngineOptions

if TYPE_CHECKING:
    from .server import ServerLM


def make_server_lm(options: EngineOptions, tokenizer: Any, greedy_tasks: frozenset[str] | None = None) -> "ServerLM":
    """An lm-eval model over the TGI or vLLM server at options.url; waits until the server is ready.

    Imports lm-eval only when called: the options type must stay importable in the slim operator image.
    """
    from .server import ServerLM

    if options.engine == "tgi":
        from .tgi import TGIBackend

        backend: Any = TGIBackend(options, tokenizer)
    elif options.engine == "vllm":
        from .vllm import VLLMBackend

        backend = VLLMBackend(options, tokenizer)
    else:
        raise ValueError(f"engine {options.engine!r} runs in-process; make_server_lm is for the served engines")
    return ServerLM(backend, tokenizer, options.concurrency, greedy_tasks)
