"""Cluster-wide settings of the operator (images, service accounts, sizes), read from its environment.

The Helm chart sets these variables on the operator Deployment; the operator hands the same variables to
every controller Job, so the evaluation Jobs a controller renders use the chart's images and accounts.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..catalogue.engines import SERVED_ENGINES, server_image

PREFIX = "EVOMERGE_"


@dataclass(frozen=True)
class ClusterSettings:
    worker_image: str = "ghcr.io/evomerge/evomerge-worker:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    # Each served engine's server image (EVOMERGE_<ENGINE>_IMAGE); an engine not given runs the catalogue's pin.
    server_images: dict[str, str] = field(default_factory=dict)
    controller_service_account: str = "evomerge-controller"
    controller_cluster_role: str = "evomerge-controller"
    evaluation_service_account: str = "evomerge-evaluation"
    evaluation_ttl_seconds: int = 3600
    evaluation_backoff_limit: int = 1
    controller_backoff_limit: int = 6
    controller_resources: dict[str, Any] = field(
        default_factory=lambda: {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    )
    scorer_resources: dict[str, Any] = field(
        default_factory=lambda: {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "8Gi"}}
    )
    shm_size: str = "1Gi"
    scratch_size: str = "64Gi"
    run_as_user: int = 65532
    pvc_root: str = "/mnt/pvc"
    cache_mount: str = "/models"
    server_port: int = 8080  # of an evaluation pod's server, on the pod's own network
    work_port: int = 8070  # of a controller's work endpoint, where an async search's evaluation pods ask for work
    queue_name: str = ""  # the Kueue LocalQueue of searches that name none ("": no queueing)

    def __post_init__(self) -> None:
        object.__setattr__(self, "server_images", {name: self.server_images.get(name) or server_image(name)
                                                   for name in SERVED_ENGINES})

    def server_image(self, engine: str) -> str:
        """The image of a served engine's server."""
        return self.server_images[engine]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ClusterSettings":
        """Settings from EVOMERGE_* variables (EVOMERGE_WORKER_IMAGE, …); JSON for the resource maps."""
        env = os.environ if env is None else env
        _refuse_unknown_engine_images(env)
        images = {engine: env[_image_variable(engine)] for engine in SERVED_ENGINES if env.get(_image_variable(engine))}
        values: dict[str, Any] = {"server_images": images} if images else {}
        for f in dataclasses.fields(cls):
            if f.name == "server_images":
                continue
            raw = env.get(PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            try:
                values[f.name] = _parse(f.type, raw)
            except ValueError as error:
                raise ValueError(f"{PREFIX}{f.name.upper()}={raw!r}: {error}") from None
        return cls(**values)

    def to_env(self) -> list[dict[str, str]]:
        """The same settings as container env entries, for the pods that render further children."""
        out = []
        for f in dataclasses.fields(self):
            if f.name == "server_images":
                out += [{"name": _image_variable(engine), "value": self.server_image(engine)} for engine in SERVED_ENGINES]
                continue
            value = getattr(self, f.name)
            text = json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)
            out.append({"name": PREFIX + f.name.upper(), "value": text})
        return out


def _image_variable(engine: str) -> str:
    return f"{PREFIX}{engine.upper()}_IMAGE"


def _refuse_unknown_engine_images(env: Mapping[str, str]) -> None:
    """An EVOMERGE_<X>_IMAGE for no served engine is a typo in the chart's servers.images (or an engine without a
    server): refused, since ignoring it would run the catalogue's pin where the user asked for their image."""
    known = {_image_variable(engine) for engine in SERVED_ENGINES} | {PREFIX + f.name.upper()
                                                                      for f in dataclasses.fields(ClusterSettings)}
    for name in env:
        if name.startswith(PREFIX) and name.endswith("_IMAGE") and name not in known:
            engine = name.removeprefix(PREFIX).removesuffix("_IMAGE").lower()
            raise ValueError(f"{name}: no served engine is named {engine!r} — servers.images (the chart) takes "
                             f"{', '.join(SERVED_ENGINES)}")


def _parse(kind: Any, raw: str) -> Any:
    kind = str(kind)
    if kind.startswith("dict"):
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError("expected a JSON object such as {\"requests\": {\"cpu\": \"1\"}}")
        return value
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise ValueError("expected an integer") from None
    return raw
