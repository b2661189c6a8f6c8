"""storage.output.exporter in a MergeSearch spec: evomerge by default, mergekit only for experts it can export."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from evomerge.spec import MergeSearch


def search(exporter: str | None, rev_format: str = "full") -> dict:
    output = {"uri": "pvc://merged/jp", **({"exporter": exporter} if exporter else {})}
    return {
        "metadata": {"name": "jp"},
        "spec": {"baseModel": {"uri": "/m/base"}, "objectives": [{"task": "t"}], "storage": {"output": output},
                 "experts": [{"name": "add", "uri": "/m/add"}, {"name": "rev", "uri": "/m/rev", "format": rev_format}]},
    }


def test_the_exporter_is_evomerges_own_unless_the_spec_names_mergekit():
    assert MergeSearch.model_validate(search(None)).spec.storage.output.exporter == "evomerge"
    assert MergeSearch.model_validate(search("mergekit")).spec.storage.output.exporter == "mergekit"
    assert MergeSearch.model_validate(search(None, rev_format="lora")).spec.storage.output.exporter == "evomerge"


def test_the_mergekit_exporter_refuses_lora_experts_naming_the_field_and_the_fix():
    with pytest.raises(ValidationError, match=r"storage.output.exporter: mergekit exports no LoRA experts .*exporter: evomerge.*rev"):
        MergeSearch.model_validate(search("mergekit", rev_format="lora"))
    with pytest.raises(ValidationError, match="storage.output.exporter"):
        MergeSearch.model_validate(search("mergekat"))


def promoting(promotion: dict | None, held_out: bool = True) -> dict:
    body = search(None)
    if promotion is not None:
        body["spec"]["storage"]["output"]["promotion"] = promotion
    if held_out:
        body["spec"]["heldOut"] = [{"task": "h"}, {"task": "h2", "metric": "exact_match"}]
    return body


def test_promotion_is_gated_when_there_are_held_out_items_and_always_otherwise():
    from evomerge.spec.merge_search import promotion_policy

    for held_out, policy in ((True, "gated"), (False, "always")):
        spec = MergeSearch.model_validate(promoting(None, held_out)).spec
        assert spec.storage.output.promotion.policy is None
        assert promotion_policy(spec.storage.output.promotion, spec.held_out) == policy
    spec = MergeSearch.model_validate(promoting({"policy": "always"})).spec
    assert promotion_policy(spec.storage.output.promotion, spec.held_out) == "always"
    promotion = MergeSearch.model_validate(promoting(
        {"minImprovement": "0.01", "significance": "0.01", "guarded": [{"task": "h2", "metric": "exact_match", "tolerance": "0.02"}]},
    )).spec.storage.output.promotion
    assert (promotion.min_improvement, promotion.significance) == (0.01, 0.01)
    assert [(g.key, g.tolerance) for g in promotion.guarded] == [("h2/exact_match", 0.02)]


@pytest.mark.parametrize("promotion, held_out, message", [
    ({"policy": "gated"}, False, "policy: gated compares versions on heldOut items — list heldOut objectives, or set policy: always"),
    ({"policy": "always", "guarded": [{"task": "h"}]}, True, "guarded: only a gated promotion guards objectives — set policy: gated"),
    ({"guarded": [{"task": "h2"}]}, True, r"guarded: every guarded task/metric must be a heldOut objective \(h2/acc is not; heldOut lists h/acc, h2/exact_match\)"),
    ({"significance": "1"}, True, "significance"),
    ({"minImprovement": "-0.1"}, True, "minImprovement"),
    ({"guarded": [{"task": "h", "tolerance": "-1"}]}, True, "tolerance"),
    ({"policy": "sometimes"}, True, "policy"),
])
def test_bad_promotion_settings_name_the_field_and_the_fix(promotion, held_out, message):
    with pytest.raises(ValidationError, match=message):
        MergeSearch.model_validate(promoting(promotion, held_out))
