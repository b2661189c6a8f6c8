"""The promotion gate's verdict: significance, minimum improvement and guarded objectives, in words a user reads."""

from __future__ import annotations

from evomerge.evaluate.paired import PairedTest
from evomerge.k8s.promotion import gated, judge
from evomerge.spec.merge_search import MergeSearchSpec, PromotionSpec

WEIGHTED_KEY, GUARDED_KEY = "mgsm/acc", "jcqa/acc"


def verdict(p_value: float, baseline: float, candidate: float, guarded_change: float = 0.0, **promotion):
    weighted = PairedTest("mcnemar", 400, baseline, candidate, p_value, (30, 12))
    guarded = PairedTest("bootstrap", 200, 0.6, 0.6 + guarded_change, 0.2)
    return judge(PromotionSpec.model_validate(promotion), weighted, {WEIGHTED_KEY: weighted, GUARDED_KEY: guarded},
                 {WEIGHTED_KEY: baseline})


def test_a_significant_gain_is_promoted_and_says_by_how_much():
    result = verdict(0.003, 0.512, 0.547)
    assert result.promoted and result.reason == "Improved"
    assert result.message == "held-out +0.035 (0.512 → 0.547, exact McNemar on 400 items), p = 0.003 < 0.05"
    assert result.baseline == {WEIGHTED_KEY: 0.512} and result.test.p_value == 0.003


def test_a_gain_within_noise_is_not_promoted_and_names_the_p_value():
    result = verdict(0.41, 0.512, 0.52)
    assert not result.promoted and result.reason == "NotPromoted"
    assert result.message == "held-out +0.008 (0.512 → 0.52, exact McNemar on 400 items), p = 0.41 ≥ 0.05"


def test_a_significant_loss_or_a_too_small_gain_is_not_promoted():
    assert verdict(0.001, 0.55, 0.50).message.endswith("p = 0.001 < 0.05; no gain")
    small = verdict(0.01, 0.500, 0.505, minImprovement="0.01")
    assert not small.promoted and small.message.endswith("p = 0.01 < 0.05; below minImprovement 0.01")
    assert verdict(0.01, 0.500, 0.505, significance="0.001").message.endswith("p = 0.01 ≥ 0.001")


def test_a_guarded_objective_may_not_drop_beyond_its_tolerance():
    guard = {"guarded": [{"task": "jcqa", "tolerance": "0.02"}]}
    assert verdict(0.003, 0.5, 0.56, guarded_change=-0.015, **guard).promoted
    dropped = verdict(0.003, 0.5, 0.56, guarded_change=-0.05, **guard)
    assert not dropped.promoted
    assert dropped.message.endswith("p = 0.003 < 0.05; guarded jcqa/acc drops by 0.05 > tolerance 0.02 (p = 0.2)")


def test_a_search_is_gated_when_it_has_held_out_items_unless_its_policy_says_always():
    def spec(**output) -> MergeSearchSpec:
        return MergeSearchSpec.model_validate({
            "experts": [{"name": "a", "uri": "/a"}, {"name": "b", "uri": "/b"}], "merge": {"method": "linear"},
            "objectives": [{"task": "t"}], **output})

    assert gated(spec(heldOut=[{"task": "h"}], storage={"output": {"uri": "pvc://o/x"}}))
    assert not gated(spec(storage={"output": {"uri": "pvc://o/x"}}))
    assert not gated(spec(heldOut=[{"task": "h"}], storage={"output": {"uri": "pvc://o/x", "promotion": {"policy": "always"}}}))
