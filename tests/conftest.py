"""Shared fixtures: tiny model families, the nano zoo, local lm-eval tasks and the real vLLM server, built per
session (no downloads; tests never touch ~/.cache)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from evomerge.zoo import Zoo, build_zoo
from tests.support.tiny_models import build_family, write_choice_task
from tests.support.vllm import vllm_server  # noqa: F401 (a session fixture)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory) -> dict[str, Path]:
    return build_family(tmp_path_factory.mktemp("family"))


@pytest.fixture(scope="session")
def deep_family(tmp_path_factory) -> dict[str, Path]:
    """Four layers, so layer groups span several blocks."""
    return build_family(tmp_path_factory.mktemp("deep_family"), n_experts=2, layers=4, seed=3)


@pytest.fixture(scope="session")
def tiny_tasks(tmp_path_factory) -> Path:
    return write_choice_task(tmp_path_factory.mktemp("tasks"))


@dataclass(frozen=True)
class TimedZoo:
    zoo: Zoo
    wall_s: float
    cpu_s: float


@pytest.fixture(scope="session")
def nano_build(tmp_path_factory: pytest.TempPathFactory) -> TimedZoo:
    cache = tmp_path_factory.mktemp("zoo-cache")
    wall, cpu = time.perf_counter(), time.process_time()
    zoo = build_zoo("nano", seed=0, cache_dir=cache)
    return TimedZoo(zoo, time.perf_counter() - wall, time.process_time() - cpu)


@pytest.fixture(scope="session")
def nano_zoo(nano_build: TimedZoo) -> Zoo:
    return nano_build.zoo


@pytest.fixture(scope="session")
def smollm2_world() -> Zoo:
    """The SmolLM2 world for the opt-in tests (``pytest -m smollm2``): from the user's cache, or built there
    (about 30 minutes on 2 cores), so the world is built once, not per session."""
    from evomerge.zoo.smollm2.build import build_smollm2

    return build_smollm2(seed=0)
