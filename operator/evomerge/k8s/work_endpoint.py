"""The controller's work endpoint: evaluation pods of an async search ask it for their next candidate.

An evaluation pod holds no API token, so it cannot read work from the API server nor write scores to it.
Instead it talks to its controller over the pod network (plain HTTP on `ClusterSettings.work_port`):

    POST /next    {"pod": NAME}                           → 200 {"id", "recipe"} | 204 nothing yet | 410 stop
    POST /result  {"pod": NAME, "id", "scores" | "error"} → 204

`/next` waits up to LONG_POLL_SECONDS for work, so a pod gets a new candidate as soon as the runner submits
it. Every request is checked against the API server: NAME must be a live evaluation pod of this search's
epoch and the request must come from that pod's own IP; anything else is refused with 403 and never
touches the queue. A pod's Job holds at most one candidate at a time (`assigned`): a pod that died holding
one is replaced by its Job, and the new pod gets the same candidate again first — a dead pod costs at most
that candidate's attempt.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable

from ..executors.base import EvalResult
from ..merge.recipe import MergeRecipe
from .naming import COMPONENT_LABEL, EVALUATION, SEARCH_UID_LABEL

log = logging.getLogger(__name__)
LONG_POLL_SECONDS = 20.0
MAX_BODY = 1 << 20
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"

Lookup = Callable[[str], "dict[str, Any] | None"]  # pod name → the Pod object, or None


class WorkEndpoint:
    """The queue of candidates not yet handed out, who holds what, and the results that came back."""

    def __init__(self, lookup_pod: Lookup, search_uid: str, host: str, port: int):
        self.lookup_pod, self.search_uid = lookup_pod, search_uid
        self._lock = threading.Condition()
        self._queue: deque[tuple[str, MergeRecipe]] = deque()
        self._assigned: dict[str, tuple[str, MergeRecipe]] = {}  # job name → the candidate it holds
        self._results: deque[EvalResult] = deque()
        self._closing = False
        self._stopped: set[str] = set()  # Jobs told to stop
        self.asking = 0  # pods waiting in /next now
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="evomerge-work-endpoint", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    # ---- the executor's side ---------------------------------------------------------------------------
    def offer(self, candidate: str, recipe: MergeRecipe) -> None:
        with self._lock:
            self._queue.append((candidate, recipe))
            self._lock.notify_all()

    def withdraw(self) -> tuple[str, MergeRecipe] | None:
        """The oldest candidate no pod took yet (the executor starts a new pod on it), or None."""
        with self._lock:
            return self._queue.popleft() if self._queue else None

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    def assign(self, job: str, candidate: str, recipe: MergeRecipe) -> None:
        """`job` holds `candidate` (the first candidate a new Job's merge step writes)."""
        with self._lock:
            self._assigned[job] = (candidate, recipe)

    def holding(self, job: str) -> str | None:
        with self._lock:
            held = self._assigned.get(job)
            return held[0] if held else None

    def release(self, job: str) -> str | None:
        """Forget what an ended Job held; the candidate it held, if any."""
        with self._lock:
            held = self._assigned.pop(job, None)
            return held[0] if held else None

    def take_results(self, timeout: float) -> list[EvalResult]:
        """Results that came back, waiting up to `timeout` seconds for the first."""
        with self._lock:
            self._lock.wait_for(lambda: bool(self._results), timeout)
            out = list(self._results)
            self._results.clear()
            return out

    def close(self, told: Iterable[str] = (), grace_s: float = 0.0) -> None:
        """Answer 410 from now on (pods end); stop serving once every Job in `told` was answered so, or after `grace_s`."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
            self._lock.wait_for(lambda: set(told) <= self._stopped, grace_s)
        self._server.shutdown()
        self._server.server_close()

    # ---- the pods' side ----------------------------------------------------------------------------------
    def job_of(self, pod: str, address: str) -> str | None:
        """The Job of evaluation pod `pod` of this search, if the request comes from that pod's IP; else None."""
        found = self.lookup_pod(pod)
        if found is None:
            return None
        labels = found["metadata"].get("labels") or {}
        ip = (found.get("status") or {}).get("podIP")
        if labels.get(SEARCH_UID_LABEL) != self.search_uid or labels.get(COMPONENT_LABEL) != EVALUATION or ip != address:
            return None
        return labels.get(JOB_NAME_LABEL)

    def next_for(self, job: str, wait_s: float = LONG_POLL_SECONDS) -> tuple[str, MergeRecipe] | None | bool:
        """The candidate `job` holds (a replacement pod retries it), else the next queued one; None when there
        is none within `wait_s`; False once closing."""
        with self._lock:
            held = self._assigned.get(job)
            if held is not None:
                return held
            self.asking += 1
            try:
                self._lock.wait_for(lambda: self._closing or bool(self._queue), wait_s)
            finally:
                self.asking -= 1
            if self._closing:
                self._stopped.add(job)
                self._lock.notify_all()
                return False
            if not self._queue:
                return None
            self._assigned[job] = self._queue.popleft()
            return self._assigned[job]

    def report(self, job: str, candidate: str, scores: dict[str, float] | None, error: str | None) -> None:
        with self._lock:
            held = self._assigned.get(job)
            if held is not None and held[0] == candidate:
                del self._assigned[job]
            self._results.append(EvalResult(candidate, scores, error))
            self._lock.notify_all()


def _handler(endpoint: WorkEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(min(length, MAX_BODY)) or b"{}") if length <= MAX_BODY else None
            except ValueError:
                body = None
            if not isinstance(body, dict) or not isinstance(body.get("pod"), str):
                return self._answer(HTTPStatus.BAD_REQUEST, {"error": "expected a JSON object with the asking pod's name"})
            job = endpoint.job_of(body["pod"], self.client_address[0])
            if job is None:
                log.warning("refused %s %s from %s: not an evaluation pod of this search at that address", self.path,
                            body["pod"], self.client_address[0])
                return self._answer(HTTPStatus.FORBIDDEN, {"error": "not an evaluation pod of this search"})
            if self.path == "/next":
                work = endpoint.next_for(job)
                if work is False:
                    return self._answer(HTTPStatus.GONE, {})
                if work is None:
                    return self._answer(HTTPStatus.NO_CONTENT, None)
                candidate, recipe = work  # type: ignore[misc]
                return self._answer(HTTPStatus.OK, {"id": candidate, "recipe": recipe.to_dict()})
            if self.path == "/result" and isinstance(body.get("id"), str):
                scores = body.get("scores")
                if scores is not None and not (isinstance(scores, dict) and all(isinstance(v, (int, float)) for v in scores.values())):
                    return self._answer(HTTPStatus.BAD_REQUEST, {"error": "scores must map metric keys to numbers"})
                error = body.get("error")
                endpoint.report(job, body["id"], {k: float(v) for k, v in scores.items()} if scores else None,
                                None if scores else str(error or "the evaluation pod reported neither scores nor an error"))
                return self._answer(HTTPStatus.NO_CONTENT, None)
            return self._answer(HTTPStatus.NOT_FOUND, {"error": "POST /next or /result"})

        def _answer(self, status: HTTPStatus, body: dict[str, Any] | None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            log.debug("work endpoint: " + format, *args)

    return Handler
