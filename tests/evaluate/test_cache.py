"""The persistent score cache: survives reopening, and keys change with whatever changes a score."""

from __future__ import annotations

import os

from evomerge.evaluate.cache import ScoreCache, default_cache_path, evaluation_context, score_key
from evomerge.spec.merge_search import Objective

OBJECTIVES = [Objective(task="tiny_colors", limit=6)]


def test_scores_survive_reopening(tmp_path):
    path = tmp_path / "sub" / "scores.sqlite"
    ScoreCache(path).put("k1", {"t/acc": 0.5}, "digest", "ctx")
    reopened = ScoreCache(path)
    assert reopened.get("k1") == {"t/acc": 0.5}
    assert reopened.get("k2") is None
    assert len(reopened) == 1


def test_context_changes_with_objectives_seed_engine_and_files(tiny_family, task_dir):
    models = [tiny_family["expert0"], tiny_family["expert1"]]

    def context(**changes):
        args = {"objectives": OBJECTIVES, "seed": 0, "engine": "transformers", "model_dirs": models,
                "include_paths": [str(task_dir)], **changes}
        return evaluation_context(**args)

    reference = context()
    assert reference == context()
    assert reference != context(objectives=[Objective(task="tiny_colors", limit=4)])
    assert reference != context(objectives=[Objective(task="tiny_colors", metric="acc_norm", limit=6)])
    assert reference != context(seed=1)
    assert reference != context(engine="vllm")
    config = tiny_family["expert1"] / "config.json"
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # the expert was rewritten
    try:
        assert reference != context()
    finally:
        os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert score_key("recipe-a", reference) != score_key("recipe-b", reference)


def test_default_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOMERGE_CACHE_DIR", str(tmp_path))
    assert default_cache_path() == tmp_path / "scores.sqlite"
    monkeypatch.delenv("EVOMERGE_CACHE_DIR")
    assert default_cache_path().parts[-3:] == (".cache", "evomerge", "scores.sqlite")
