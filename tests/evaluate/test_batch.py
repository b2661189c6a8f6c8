"""The evaluation pod's scorer: a batch of recipes in, compact per-candidate JSON out."""

from __future__ import annotations

import pytest

from evomerge.evaluate.batch import score_batch
from evomerge.evaluate.cache import ScoreCache
from evomerge.evaluate.model import evaluate_model
from evomerge.spec.merge_search import MergeSearchSpec
from tests.evaluate.support import linear_recipe


def _spec(family, task_dir, engine="transformers") -> dict:
    return {
        "experts": [{"name": n, "uri": str(family[n])} for n in ("expert0", "expert1")],
        "merge": {"method": "linear"},
        "objectives": [{"task": "tiny_colors", "metric": "acc", "limit": 6}],
        "heldOut": [{"task": "tiny_next", "metric": "perplexity", "direction": "minimize"}],
        "evaluation": {"engine": engine, "includePaths": [str(task_dir)], "device": "cpu"},
    }


def _items(family):
    return [
        {"id": "c1", "recipe": linear_recipe(family, 1.0, 0.0).to_dict()},
        {"id": "c2", "recipe": linear_recipe(family, 0.0, 1.0).to_dict()},
        {"id": "broken", "recipe": {"method": "linear"}},
    ]


def test_every_candidate_gets_scores_or_its_own_error(tiny_family, task_dir, tmp_path):
    spec = MergeSearchSpec.model_validate(_spec(tiny_family, task_dir))
    cache = ScoreCache(tmp_path / "scores.sqlite")
    results = score_batch(_items(tiny_family), spec, cache=cache)
    assert [r["id"] for r in results] == ["c1", "c2", "broken"]
    assert set(results[0]) == {"id", "scores"} and set(results[0]["scores"]) == {"tiny_colors/acc"}
    assert "recipes[2]: not a {id, recipe} item" in results[2]["error"]
    assert len(cache) == 2
    held_out = score_batch(_items(tiny_family)[:1], spec, held_out=True)
    expected = evaluate_model(tiny_family["expert0"], spec.held_out, [str(task_dir)])
    assert held_out[0]["scores"] == pytest.approx(expected, rel=1e-6)


def test_a_broken_setup_fails_every_candidate_with_the_reason(tiny_family, task_dir):
    document = _spec(tiny_family, task_dir)
    document["objectives"] = [{"task": "tiny_nope"}]
    results = score_batch(_items(tiny_family)[:2], MergeSearchSpec.model_validate(document))
    assert [r["id"] for r in results] == ["c1", "c2"]
    assert all("unknown lm-eval task(s) tiny_nope" in r["error"] for r in results)


def test_a_tgi_candidate_is_scored_through_its_server_one_per_start(tiny_family, task_dir, tgi):
    """TGI (a look-alike: TGI has no CPU build) cannot reload weights: its pod serves one candidate; vLLM's batches
    are scored through the real server in test_served.py."""
    spec = MergeSearchSpec.model_validate(_spec(tiny_family, task_dir, engine="tgi"))
    one = _items(tiny_family)[:1]
    results = score_batch(one, spec, model_dir=tiny_family["base"], server_url=tgi.url)
    # The fake serves the base model: the scores are the base's, whatever the recipe says.
    expected = evaluate_model(tiny_family["base"], spec.objectives, [str(task_dir)])
    assert results == [{"id": "c1", "scores": pytest.approx(expected, rel=1e-6)}]
    two = score_batch(_items(tiny_family)[:2], spec, model_dir=tiny_family["base"], server_url=tgi.url)
    assert all("scores at most 1 candidates per server start" in r["error"] for r in two)

