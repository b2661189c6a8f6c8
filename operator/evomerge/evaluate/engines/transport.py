"""What the server engines share about talking HTTP: which failures are worth retrying, backoff, readiness.

Servers restart, load weights for minutes and shed load with 429/503; a search must ride through all of
that, yet fail at once (with the server's own message) on a request the server will never accept.
"""

from __future__ import annotations

import functools
import importlib
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class ServerError(RuntimeError):
    """The inference server failed in a way retrying does not fix; the message says what to change."""


class ServerNotReady(ServerError):
    """The server did not report healthy within the readiness timeout."""


class NotReadyYet(Exception):
    """Raised by a readiness probe for an answer that means "still starting" (for example health != 200)."""


class PrefillLogprobsUnavailable(ServerError):
    """A TGI server started without --enable-prefill-logprobs: it cannot score loglikelihood tasks."""


class TokenizationMismatch(ServerError):
    """The server tokenised a request differently from the tokenizer the engine split it with."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: `backoff_s`, doubled per attempt up to `max_backoff_s`, for `attempts` tries."""

    attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def delay(self, attempt: int) -> float:
        return min(self.backoff_s * 2**attempt, self.max_backoff_s)


def status_of(error: BaseException) -> int | None:
    """The HTTP status behind an exception raised by requests or the Hugging Face client, if any."""
    seen: BaseException | None = error
    while seen is not None:
        response = getattr(seen, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            return status
        seen = seen.__cause__
    return None


def is_transient(error: BaseException) -> bool:
    status = status_of(error)
    if status is not None:
        return status in TRANSIENT_STATUSES
    return isinstance(error, _transport_errors())


def call_with_retries(call: Callable[[], T], policy: RetryPolicy, what: str,
                      sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `call`; retry transient failures with backoff; anything else propagates at once."""
    for attempt in range(policy.attempts):
        try:
            return call()
        except Exception as error:  # classified right below; non-transient errors re-raise unchanged
            if not is_transient(error):
                raise
            if attempt == policy.attempts - 1:
                raise ServerError(f"{what}: still failing after {policy.attempts} attempts — {describe(error)}") from error
            sleep(policy.delay(attempt))
    raise AssertionError("unreachable: attempts must be at least 1")


def wait_until_ready(probe: Callable[[], None], url: str, timeout_s: float, interval_s: float = 2.0,
                     sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
    """Call `probe` until it returns; `ServerNotReady` after `timeout_s`.

    Refused connections, 5xx answers and `NotReadyYet` mean "still starting"; any other error (a 404,
    a misconfigured client) propagates at once instead of being waited out.
    """
    deadline = clock() + timeout_s
    while True:
        try:
            probe()
            return
        except Exception as error:
            if not (isinstance(error, NotReadyYet) or is_transient(error)):
                raise
            last = describe(error)
        if clock() >= deadline:
            raise ServerNotReady(
                f"{url} did not become ready within {timeout_s:g}s (last answer: {last}) — check that the server "
                "is running and its logs; large models take minutes to load before /health answers 200"
            )
        sleep(interval_s)


def describe(error: BaseException) -> str:
    """One line: the HTTP status and the server's own error message when there is one."""
    status = status_of(error)
    text = str(error)
    message = _server_message(error) or (text.splitlines()[0] if text else type(error).__name__)
    if status is not None:
        return f"HTTP {status}: {message}"
    return message if isinstance(error, NotReadyYet) else f"{type(error).__name__}: {message}"


def _server_message(error: BaseException) -> str | None:
    seen: BaseException | None = error
    while seen is not None:
        response = getattr(seen, "response", None)
        if response is not None:
            try:
                body: Any = response.json()
            except Exception:  # not JSON: fall back to the exception text
                return None
            detail = body.get("error", body) if isinstance(body, dict) else body
            if isinstance(detail, dict):
                detail = detail.get("message", detail)
            return str(detail)
        seen = seen.__cause__
    return None


@functools.lru_cache(maxsize=1)
def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection and timeout errors of the HTTP stacks in use (the hub client's httpx flavour varies by version)."""
    import requests

    found: list[type[BaseException]] = [ConnectionError, TimeoutError, requests.ConnectionError, requests.Timeout]
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    try:
        from huggingface_hub.errors import InferenceTimeoutError

        found.append(InferenceTimeoutError)
    except ImportError:
        pass
    return tuple(found)
