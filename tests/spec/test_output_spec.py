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
