"""Worlds by name: the toy zoo and the SmolLM2 world, and the errors a wrong name or size gets."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from evomerge.cli.zoo_cmd import zoo_app
from evomerge.catalogue.engines import DEFAULT_ENGINE, ENGINES
from evomerge.zoo.worlds import DEMO_ENGINES, WORLDS, build_world, check_world


def test_the_toy_world_is_the_zoo_at_its_size(nano_zoo):
    cache_dir = nano_zoo.root.parent.parent
    assert build_world("toy", seed=0, size="nano", cache_dir=cache_dir) == nano_zoo
    assert build_world("toy", seed=0, cache_dir=cache_dir) == nano_zoo  # nano unless told


@pytest.mark.parametrize("world, size, fix", [
    ("huge", None, "choose one of toy, smollm2"),
    ("smollm2", "nano", "leave --size out"),
    ("toy", "huge", "nano, small"),
])
def test_a_wrong_world_or_size_names_the_fix(world, size, fix):
    with pytest.raises(ValueError, match=fix):
        check_world(world, size)


def test_zoo_build_refuses_a_size_for_the_smollm2_world_before_building(tmp_path):
    result = CliRunner().invoke(zoo_app, ["build", "--world", "smollm2", "--size", "small", "--cache-dir", str(tmp_path)])
    assert result.exit_code != 0 and "leave --size out" in result.output
    assert not any(tmp_path.iterdir())


def test_every_world_names_the_served_or_in_process_engine_its_demo_scores_with():
    assert set(DEMO_ENGINES) == set(WORLDS)
    assert DEMO_ENGINES["toy"] == DEFAULT_ENGINE and ENGINES[DEMO_ENGINES["smollm2"]].served
