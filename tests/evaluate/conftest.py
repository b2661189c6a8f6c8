"""Fixtures for engine tests: every lm-eval request type as a local task, and fake TGI/vLLM servers."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.evaluate.support import write_all_task_types
from tests.support.fake_servers import FakeTGI, FakeVLLM


@pytest.fixture(scope="session")
def task_dir(tmp_path_factory) -> Path:
    return write_all_task_types(tmp_path_factory.mktemp("all_task_types"))


@pytest.fixture
def tgi(tiny_family) -> Iterator[FakeTGI]:
    with FakeTGI(tiny_family["base"]) as server:
        yield server


@pytest.fixture
def vllm(tiny_family) -> Iterator[FakeVLLM]:
    with FakeVLLM(tiny_family["base"]) as server:
        yield server
