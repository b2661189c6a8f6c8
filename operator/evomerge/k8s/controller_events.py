"""Events the controller posts on its MergeSearch: a cause that repeats (every stuck pod, every redraw of a
report that cannot be written) is posted once, and an event the API server refuses is only logged — the
search never stops over its own news."""

from __future__ import annotations

import logging
from typing import Any

from .client import ApiError, Kube
from .naming import CONTROLLER_SOURCE

log = logging.getLogger(__name__)


class ControllerEvents:
    def __init__(self, kube: Kube, search: dict[str, Any]):
        self.kube, self.search = kube, search
        self._posted: set[tuple[str, str]] = set()

    def post(self, type_: str, reason: str, message: str, once_per: str | None = None) -> None:
        """Post now; with `once_per`, only the first time this reason comes with that cause."""
        if once_per is not None:
            if (reason, once_per) in self._posted:
                return
            self._posted.add((reason, once_per))
        try:
            self.kube.post_event(self.search, type_, reason, message, CONTROLLER_SOURCE)
        except ApiError as error:
            log.warning("event %s not posted: %s", reason, error)
