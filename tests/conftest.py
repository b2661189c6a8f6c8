"""Shared fixtures: tiny model families and local lm-eval tasks, built per session (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.tiny_models import build_family, write_choice_task

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory) -> dict[str, Path]:
    return build_family(tmp_path_factory.mktemp("family"))


@pytest.fixture(scope="session")
def tiny_tasks(tmp_path_factory) -> Path:
    return write_choice_task(tmp_path_factory.mktemp("tasks"))
