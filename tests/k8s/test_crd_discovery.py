"""The generated CRDs as a real API server serves them: discovery, which `kubectl get ms|mm|ex` resolves through."""

from __future__ import annotations

from kubernetes import client as k8s

from test_operator import GROUP, VERSION, kube  # noqa: F401 (kube: the fixture that installs crds/)


def test_discovery_lists_every_kind_with_its_short_name_and_category(kube, api_client):
    listing = k8s.CustomObjectsApi(api_client).get_api_resources(GROUP, VERSION)
    kinds = {r.kind: r for r in listing.resources if "/" not in r.name}  # leave out the status subresources
    assert {kind: r.short_names for kind, r in kinds.items()} == {"MergeSearch": ["ms"], "MergedModel": ["mm"], "Expert": ["ex"]}
    assert all(r.categories == ["evomerge"] for r in kinds.values())
