"""One nano zoo per test session, built into a temporary cache (tests never touch ~/.cache)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from evomerge.zoo import Zoo, build_zoo


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
