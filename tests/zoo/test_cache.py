from pathlib import Path

import pytest

from evomerge.zoo.cache import build_atomically, cache_root, zoo_dir


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EVOMERGE_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert zoo_dir(tmp_path, "nano", 3, "abc") == tmp_path / "zoo" / "nano-3-abc"
    monkeypatch.delenv("EVOMERGE_CACHE")
    assert cache_root() == Path.home() / ".cache" / "evomerge"


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    final = tmp_path / "zoo" / "nano-0-x"

    def half_build(tmp: Path) -> None:
        (tmp / "base").mkdir()
        (tmp / "base" / "config.json").write_text("{}")
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-build

    with pytest.raises(KeyboardInterrupt):
        build_atomically(final, half_build)
    assert list((tmp_path / "zoo").iterdir()) == []


def test_a_finished_build_appears_all_at_once(tmp_path):
    final = tmp_path / "zoo" / "nano-0-x"
    build_atomically(final, lambda tmp: (tmp / "zoo.json").write_text("{}"))
    assert (final / "zoo.json").read_text() == "{}"
    assert [p.name for p in (tmp_path / "zoo").iterdir()] == ["nano-0-x"]


def test_leftovers_of_a_killed_build_are_cleaned_up(tmp_path):
    final = tmp_path / "zoo" / "nano-0-x"
    dead = tmp_path / "zoo" / ".tmp-nano-0-x-999999999-abcd"  # no such process
    dead.mkdir(parents=True)
    build_atomically(final, lambda tmp: (tmp / "zoo.json").write_text("{}"))
    assert not dead.exists()
