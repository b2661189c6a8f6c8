"""What the server clients share: the server's url, the retry policy, waiting until it is ready; and, for the
JSON-over-HTTP ones (vLLM, SGLang), a requests session."""

from __future__ import annotations

import time
from typing import Any, Callable

import requests

from .options import EngineOptions
from .transport import wait_until_ready


class HttpBackend:
    """A client of the server at options.url, returned once the server is ready.

    A subclass opens the client its requests go through in `_connect`, and `_probe` asks the server through
    it whether it is ready (raising while not).
    """

    def __init__(self, options: EngineOptions, tokenizer: Any, sleep: Callable[[float], None] = time.sleep):
        assert options.url is not None, "EngineOptions guarantees a url for server engines"
        self.url = options.url.rstrip("/")
        self.tokenizer = tokenizer
        self.retry = options.retry
        self.sleep = sleep
        self.timeout_s = options.timeout_s
        self._connect(options)
        wait_until_ready(self._probe, self.url, options.ready_timeout_s, options.ready_interval_s, sleep=sleep)

    def _connect(self, options: EngineOptions) -> None:
        raise NotImplementedError

    def _probe(self) -> None:
        raise NotImplementedError


class JsonHttpBackend(HttpBackend):
    """A requests session to the server (with its API key, if any), ready once `/health` answers."""

    def _connect(self, options: EngineOptions) -> None:
        self.session = requests.Session()
        if options.api_key:
            self.session.headers["Authorization"] = f"Bearer {options.api_key}"

    def close(self) -> None:
        self.session.close()

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None, want_json: bool = True) -> Any:
        response = self.session.request(method, self.url + path, json=body, timeout=self.timeout_s)
        response.raise_for_status()
        return response.json() if want_json else None

    def _probe(self) -> None:
        self.session.get(self.url + "/health", timeout=self.timeout_s).raise_for_status()
