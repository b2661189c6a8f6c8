"""crds/ is generated from the spec types; a stale file or a non-structural schema fails here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from evomerge.spec.crd import KINDS, render_crd

REPO = Path(__file__).resolve().parents[2]


def test_crds_and_chart_crds_on_disk_match_the_spec_types():
    result = subprocess.run(
        [sys.executable, "-m", "evomerge.cli.main", "crds", "--check",
         "--out", str(REPO / "crds"), "--out", str(REPO / "charts" / "evomerge" / "crds")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr


INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


def _any_ofs(node) -> list:
    """Every node with an anyOf in a schema."""
    if isinstance(node, list):
        return [found for item in node for found in _any_ofs(item)]
    if not isinstance(node, dict):
        return []
    return ([node] if "anyOf" in node else []) + [found for value in node.values() for found in _any_ofs(value)]


def test_schemas_are_structural():
    for kind in KINDS:
        crd = render_crd(kind)
        text = json.dumps(crd)
        # gt/ge/lt/le: pydantic's bounds of an optional Number, which the API server refuses as unknown keywords
        for forbidden in ('"$ref"', '"oneOf"', '"allOf"', '"title"', '"prefixItems"', '"const"', '"gt":', '"ge":', '"lt":',
                          '"le":'):
            assert forbidden not in text, f"{kind} schema contains {forbidden}"
        for node in _any_ofs(crd):  # the one anyOf a structural schema allows: int-or-string, as for quantities
            assert node.get("x-kubernetes-int-or-string") is True and node["anyOf"] == INT_OR_STRING, node


def test_merge_search_has_printer_columns_short_name_and_status():
    crd = render_crd("MergeSearch")
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["names"]["shortNames"] == ["ms"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Phase", "Epoch", "Round", "Generation", "Evaluations", "Queued", "Best", "Reason", "Age", "Message"]
    # within the current epoch: a one-round search reads ROUND 1 however often its spec was edited
    assert (columns["Round"]["jsonPath"], columns["Generation"]["jsonPath"]) == (".status.epochRound", ".status.epochGeneration")
    assert columns["Epoch"]["jsonPath"] == ".status.epoch"
    assert columns["Best"]["jsonPath"] == ".status.best.value"  # in the objective's own direction, not the fitness
    assert columns["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert columns["Message"]["priority"] == 1  # kubectl get -o wide
    assert (columns["Queued"]["jsonPath"], columns["Queued"]["priority"]) == (".status.queuedEvaluations", 1)  # waiting for Kueue
    assert version["subresources"] == {"status": {}}
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["merge"]["properties"]["method"]["enum"][:2] == ["linear", "task_arithmetic"]
    assert spec["properties"]["objectives"]["minItems"] == 1


def test_every_kind_has_its_short_name_and_the_evomerge_category():
    names = {kind: render_crd(kind)["spec"]["names"] for kind in KINDS}
    assert {kind: n["shortNames"] for kind, n in names.items()} == {"MergeSearch": ["ms"], "MergedModel": ["mm"], "Expert": ["ex"]}
    assert all("evomerge" in n["categories"] for n in names.values())
