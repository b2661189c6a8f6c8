"""An evaluation pod's side of its controller's work endpoint (k8s/work_endpoint.py): ask for the next
candidate, hand back each result. Plain HTTP inside the cluster network; the pod needs no API token.

The controller may be briefly unreachable (its pod restarting, the network): requests are retried for
UNREACHABLE_SECONDS, then the pod gives up with `WorkEndpointGone` — a restarted controller deletes the pods
of its predecessor anyway, since they ask an address that is gone.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import requests

POD_NAME_ENV = "EVOMERGE_POD_NAME"  # how an evaluation pod names itself to the work endpoint (downward API)
UNREACHABLE_SECONDS = 300.0
ASK_TIMEOUT_SECONDS = 60.0  # above the endpoint's long poll


class WorkEndpointGone(RuntimeError):
    """The controller's work endpoint did not answer for UNREACHABLE_SECONDS."""


class WorkClient:
    def __init__(self, url: str, pod: str, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.url, self.pod = url.rstrip("/"), pod
        self.sleep, self.clock = sleep, clock
        self.session = requests.Session()

    def next(self) -> dict[str, Any] | None:
        """The next {"id", "recipe"} to score, waiting as long as the controller has none; None: stop."""
        while True:
            response = self._post("/next", {"pod": self.pod})
            if response.status_code == 200:
                return dict(response.json())
            if response.status_code == 410:
                return None
            if response.status_code != 204:
                raise WorkEndpointGone(f"POST {self.url}/next answered {response.status_code}: {response.text[:200]} — "
                                       "the controller refuses this pod")

    def report(self, item: dict[str, Any]) -> None:
        """Hand one {"id", "scores"} or {"id", "error"} entry to the controller."""
        response = self._post("/result", {"pod": self.pod, **item})
        if response.status_code != 204:
            raise WorkEndpointGone(f"POST {self.url}/result answered {response.status_code}: {response.text[:200]}")

    def close(self) -> None:
        self.session.close()

    def _post(self, path: str, body: dict[str, Any]) -> requests.Response:
        deadline = self.clock() + UNREACHABLE_SECONDS
        delay = 0.5
        while True:
            try:
                return self.session.post(self.url + path, json=body, timeout=ASK_TIMEOUT_SECONDS)
            except requests.RequestException as error:
                if self.clock() >= deadline:
                    raise WorkEndpointGone(f"the controller's work endpoint {self.url} did not answer for "
                                           f"{UNREACHABLE_SECONDS:g}s ({error})") from error
                self.sleep(delay)
                delay = min(delay * 2, 8.0)
