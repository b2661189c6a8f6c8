"""The resident engine: weights rewritten in place per candidate, tasks built once, quiet, cached."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from evomerge.evaluate.cache import ScoreCache
from evomerge.evaluate.engines.resident import ResidentEngine
from evomerge.evaluate.model import evaluate_model
from evomerge.spec.merge_search import Objective
from tests.evaluate.support import ALL_TYPES, linear_recipe

REPO = Path(__file__).resolve().parents[3]


def _engine(family, task_dir, objectives=ALL_TYPES, **kwargs) -> ResidentEngine:
    experts = {"expert0": family["expert0"], "expert1": family["expert1"]}
    return ResidentEngine(None, experts, objectives, [str(task_dir)], "cpu", 4, **kwargs)


@pytest.fixture(scope="module")
def engine(tiny_family, task_dir) -> ResidentEngine:
    return _engine(tiny_family, task_dir)


def test_each_candidate_is_scored_on_its_own_merged_weights(engine, tiny_family, task_dir):
    only_first = engine.score(linear_recipe(tiny_family, 1.0, 0.0))
    only_second = engine.score(linear_recipe(tiny_family, 0.0, 1.0))
    assert only_first != only_second
    # A merge that is exactly one expert scores as that expert loaded on its own.
    for scores, name in ((only_first, "expert0"), (only_second, "expert1")):
        alone = evaluate_model(tiny_family[name], ALL_TYPES, [str(task_dir)])
        assert scores == pytest.approx(alone, rel=1e-6)
    assert engine.score(linear_recipe(tiny_family, 1.0, 0.0)) == only_first


def test_tasks_and_datasets_are_built_once(engine, tiny_family, monkeypatch):
    import datasets
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks import TaskManager

    def reload(*args, **kwargs):
        raise AssertionError("a candidate reloaded tasks or datasets")

    monkeypatch.setattr(datasets, "load_dataset", reload)
    monkeypatch.setattr(ConfigurableTask, "download", reload)
    monkeypatch.setattr(TaskManager, "load", reload)
    for w in (0.2, 0.7):
        assert set(engine.score(linear_recipe(tiny_family, w, 1 - w))) == {o.key for o in ALL_TYPES}


def test_scoring_prints_nothing(engine, tiny_family, capfd):
    capfd.readouterr()
    engine.score(linear_recipe(tiny_family, 0.4, 0.6))
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_timings_split_merge_from_scoring(tiny_family, task_dir):
    engine = _engine(tiny_family, task_dir, [Objective(task="tiny_colors")])
    engine.score(linear_recipe(tiny_family, 0.5, 0.5))
    engine.score(linear_recipe(tiny_family, 0.3, 0.7))
    assert engine.timings.candidates == 2 and engine.timings.cache_hits == 0
    assert engine.timings.merge_s > 0 and engine.timings.score_s > 0


def test_a_cached_recipe_is_neither_merged_nor_scored_again(tiny_family, task_dir, tmp_path):
    objectives = [Objective(task="tiny_colors", limit=6)]
    cache = ScoreCache(tmp_path / "scores.sqlite")
    first = _engine(tiny_family, task_dir, objectives, cache=cache)
    scores = first.score(linear_recipe(tiny_family, 0.5, 0.5))

    restarted = _engine(tiny_family, task_dir, objectives, cache=ScoreCache(tmp_path / "scores.sqlite"))

    def no_merge(*args):
        raise AssertionError("a cached recipe was merged again")

    restarted.merger.merge_into = no_merge  # type: ignore[method-assign]
    assert restarted.score(linear_recipe(tiny_family, 0.5, 0.5)) == scores
    assert restarted.timings.cache_hits == 1
    with pytest.raises(AssertionError, match="merged again"):
        restarted.score(linear_recipe(tiny_family, 0.6, 0.4))  # a new recipe is not in the cache


def test_the_cache_does_not_mix_evaluations(tiny_family, task_dir, tmp_path):
    cache = ScoreCache(tmp_path / "scores.sqlite")
    recipe = linear_recipe(tiny_family, 0.5, 0.5)
    variants = [
        _engine(tiny_family, task_dir, [Objective(task="tiny_colors", limit=6)], cache=cache),
        _engine(tiny_family, task_dir, [Objective(task="tiny_colors", limit=4)], cache=cache),
        _engine(tiny_family, task_dir, [Objective(task="tiny_colors", limit=6)], cache=cache, seed=1),
    ]
    for engine in variants:
        engine.score(recipe)
    assert [e.timings.cache_hits for e in variants] == [0, 0, 0]
    assert len(cache) == 3


def test_the_subsample_is_drawn_once_from_the_seed(tiny_family, task_dir):
    objectives = [Objective(task="tiny_colors", limit=4)]
    a, b = (_engine(tiny_family, task_dir, objectives, seed=7) for _ in range(2))
    other = _engine(tiny_family, task_dir, objectives, seed=8)
    assert a.suite.samples == b.suite.samples != other.suite.samples
    assert a.suite.documents == {"tiny_colors": 4}


def test_a_fresh_process_builds_and_scores_without_printing(tiny_family, tmp_path):
    from tests.evaluate.support import write_all_task_types

    tasks = write_all_task_types(tmp_path / "tasks")  # new data files: datasets converts them on first load
    script = (
        "from pathlib import Path\n"
        "from evomerge.evaluate.engines.resident import ResidentEngine\n"
        "from tests.evaluate.support import ALL_TYPES, linear_recipe\n"
        f"family = {{k: Path(v) for k, v in {({k: str(v) for k, v in tiny_family.items()})!r}.items()}}\n"
        "engine = ResidentEngine(None, {'expert0': family['expert0'], 'expert1': family['expert1']}, ALL_TYPES,\n"
        f"                       [{str(tasks)!r}], 'cpu')\n"
        "engine.score(linear_recipe(family, 0.5, 0.5))\n"
    )
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "datasets")}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
