"""The history ConfigMaps survive what clusters do to them, against a real API server: a chunk deleted under a
running controller is written again, and one deleted while none ran leaves a replay of what survives, said."""

from __future__ import annotations

from evomerge.k8s.conditions import find
from evomerge.k8s.controller_main import say_if_lost
from evomerge.k8s.history_configmap import ConfigMapHistory
from evomerge.k8s.reconcile_search import SearchObservation, plan_search
from evomerge.k8s.settings import ClusterSettings
from test_operator import kube, search_body, status_of  # noqa: F401 (kube: the fixture)

CHUNK_BYTES = 300
NOW = "2026-01-01T00:00:00Z"


def results(start: int, stop: int) -> list[dict]:
    return [{"type": "result", "id": f"c{i:06d}", "scores": {"t/acc": i / 10}, "error": None} for i in range(start, stop)]


def chunks(kube, namespace: str) -> list[dict]:
    found = kube.list("ConfigMap", namespace, "evomerge.dev/component=history")
    return sorted(found, key=lambda c: int(c["metadata"]["labels"]["evomerge.dev/chunk"]))


def test_a_chunk_deleted_under_the_writer_is_written_again_with_every_event(kube, namespace):
    search = kube.create(search_body("jp", namespace))
    history = ConfigMapHistory(kube, search, epoch=1, chunk_bytes=CHUNK_BYTES)
    for event in results(0, 8):
        history.append(event)
    before = {c["metadata"]["name"]: c["data"] for c in chunks(kube, namespace)}
    assert len(before) >= 3
    for chunk in before:  # a cleanup script takes the whole history of the running epoch
        kube.delete("ConfigMap", namespace, chunk)

    history.append(results(8, 9)[0])

    after = {c["metadata"]["name"]: c["data"] for c in chunks(kube, namespace)}
    assert set(after) == set(before) and all(before[name].items() <= after[name].items() for name in before)
    assert ConfigMapHistory(kube, search, epoch=1, chunk_bytes=CHUNK_BYTES).events() == results(0, 9)
    assert history.lost is None


def test_a_chunk_lost_while_no_writer_ran_replays_what_survives_and_says_so(kube, namespace):
    search = kube.create(search_body("jp", namespace))
    started = plan_search(search, SearchObservation(), ClusterSettings(), NOW).status  # the operator starts epoch 1
    search = kube.patch_status("MergeSearch", namespace, "jp", started)
    history = ConfigMapHistory(kube, search, epoch=1, chunk_bytes=CHUNK_BYTES)
    for event in results(0, 8):
        history.append(event)
    first, second, *_ = chunks(kube, namespace)
    kept = len(first["data"])
    kube.delete("ConfigMap", namespace, second["metadata"]["name"])

    resumed = ConfigMapHistory(kube, search, epoch=1, chunk_bytes=CHUNK_BYTES)
    assert resumed.events() == results(0, kept)
    assert resumed.lost == (f"history chunk 1 of epoch 1 is missing: replay keeps the first {kept} events and the search "
                            "evaluates again from there")
    say_if_lost(kube, search, 1, {}, resumed)  # as the controller does on start: status.historyLost, then the condition
    reasons = [e["reason"] for e in kube.list("Event", namespace) if e["involvedObject"]["name"] == "jp"]
    assert "HistoryLost" in reasons
    stored = kube.get("MergeSearch", namespace, "jp")
    assert stored["status"]["historyLost"] == resumed.lost  # kept by the CRD's status schema, not pruned
    degraded = find(plan_search(stored, SearchObservation(), ClusterSettings(), NOW).status["conditions"], "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["message"]) == ("True", "HistoryLost", resumed.lost)

    redone = results(100, 108)  # the search evaluates again after the gap; the chunks after it are overwritten
    for event in redone:
        resumed.append(event)
    replayed = ConfigMapHistory(kube, search, epoch=1, chunk_bytes=CHUNK_BYTES)
    assert replayed.events() == results(0, kept) + redone and replayed.lost is None
