"""`kubectl explain` has something to say: at least 90 % of each CRD's spec properties carry a description,
taken from the spec types' field descriptions and attribute docstrings."""

from __future__ import annotations

import pytest

from evomerge.spec.crd import KINDS, render_crd

COVERAGE = 0.9


def spec_properties(node: dict, path: str = "spec") -> list[tuple[str, bool]]:
    """(path, has a description) of every property under the spec, through objects, list items and maps."""
    found = []
    for name, sub in (node.get("properties") or {}).items():
        found.append((f"{path}.{name}", bool(sub.get("description"))))
        found += spec_properties(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += spec_properties(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += spec_properties(node["additionalProperties"], f"{path}{{}}")
    return found


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_most_spec_properties_say_what_they_are(kind):
    schema = render_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    properties = spec_properties(schema)
    described = [path for path, has in properties if has]

    assert len(described) >= COVERAGE * len(properties), (
        f"{kind}: {len(described)} of {len(properties)} spec properties described; none for "
        f"{[path for path, has in properties if not has]}")
