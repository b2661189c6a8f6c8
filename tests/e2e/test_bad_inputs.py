"""The bad input catalogue (bad_inputs/*.yaml): malformed MergeSearch, MergedModel and Expert manifests.

Each file says in its annotations what must happen to it:
- `expect: rejected` — the API server refuses it at admission (422) and names `field` in its message;
- `expect: reported` — it is accepted, and the operator reports it: `condition` (Type=Status) with `reason`
  and `message` in the condition, and a Warning event with that reason.
Placeholders: ${ZOO} (the nano zoo), ${TASKS} (the test's lm-eval tasks), ${FOREIGN} (a checkpoint of another
architecture). All reported inputs live in one namespace with a good search, which must still finish.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from kubernetes import client as k8s

from evomerge.k8s.client import Invalid

from .helpers import condition, eventually, events, finished, nano_search

CATALOGUE = sorted((Path(__file__).parent / "bad_inputs").glob("*.yaml"))
ANNOTATION = "bad-input.evomerge.dev/"
CATALOGUE_TIMEOUT = 120.0  # every input settles well within this; one that never does fails its own test


def expected(path: Path) -> dict[str, str]:
    annotations = yaml.safe_load(path.read_text())["metadata"]["annotations"]
    return {k.removeprefix(ANNOTATION): v for k, v in annotations.items() if k.startswith(ANNOTATION)}


REJECTED = [p for p in CATALOGUE if expected(p)["expect"] == "rejected"]
REPORTED = [p for p in CATALOGUE if expected(p)["expect"] == "reported"]


@pytest.fixture(scope="module")
def foreign(zoo, tmp_path_factory) -> Path:
    """A checkpoint of another architecture: the zoo base at half its width and vocabulary, config to match."""
    from safetensors.numpy import load_file, save_file

    out = tmp_path_factory.mktemp("foreign")
    tensors = load_file(zoo.base / "model.safetensors")
    save_file({name: np.ascontiguousarray(t[tuple(slice(0, max(1, d // 2)) for d in t.shape)]) for name, t in tensors.items()},
              out / "model.safetensors")
    config = json.loads((zoo.base / "config.json").read_text())
    for key in ("hidden_size", "intermediate_size", "vocab_size", "head_dim"):
        config[key] //= 2
    (out / "config.json").write_text(json.dumps(config))
    return out


@pytest.fixture(scope="module")
def placeholders(zoo, fit_tasks, foreign) -> dict[str, str]:
    return {"${ZOO}": str(zoo.root), "${TASKS}": str(fit_tasks), "${FOREIGN}": str(foreign)}


def manifest(path: Path, namespace: str, placeholders: dict[str, str]) -> dict:
    text = path.read_text()
    for placeholder, value in placeholders.items():
        text = text.replace(placeholder, value)
    doc = yaml.safe_load(text)
    doc["metadata"]["namespace"] = namespace
    return doc


def test_the_catalogue_covers_every_kind_with_at_least_thirty_inputs():
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in CATALOGUE}
    assert len(CATALOGUE) >= 30 and kinds == {"MergeSearch", "MergedModel", "Expert"}
    for path in CATALOGUE:
        wanted = expected(path)
        assert wanted["expect"] in ("rejected", "reported") and wanted["message"], path.name
        assert ("field" in wanted) if wanted["expect"] == "rejected" else ("condition" in wanted and "reason" in wanted), path.name
        assert path.read_text().startswith("# "), f"{path.name}: say in a comment what is wrong with it"


@pytest.fixture(scope="module")
def catalogue_namespace(api_client, operator) -> str:
    core = k8s.CoreV1Api(api_client)
    namespace = "bad-input-catalogue"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    eventually(lambda: _has_default_account(core, namespace), "the namespace's default ServiceAccount")
    yield namespace
    core.delete_namespace(namespace)


@pytest.mark.parametrize("path", REJECTED, ids=lambda p: p.stem)
def test_the_api_server_refuses_it_at_admission_naming_the_field(path, kube, catalogue_namespace, placeholders):
    namespace = catalogue_namespace
    doc = manifest(path, namespace, placeholders)
    wanted = expected(path)

    with pytest.raises(Invalid) as refused:
        kube.create(doc)

    message = str(refused.value)
    assert refused.value.status == 422
    assert wanted["field"] in message and wanted["message"] in message, message
    assert kube.get(doc["kind"], namespace, doc["metadata"]["name"]) is None


@dataclass
class Observed:
    kind: str
    status: dict
    events: list[dict]


@pytest.fixture(scope="module")
def reported(kube, catalogue_namespace, placeholders, zoo, fit_tasks) -> tuple[str, dict[str, Observed], dict]:
    """Every reported input applied at once into one namespace, then a good search beside them; what each
    shows once it has its condition and event (or when the wait ends)."""
    namespace = catalogue_namespace
    docs = {p.stem: manifest(p, namespace, placeholders) for p in REPORTED}
    for kind in ("Expert", "MergeSearch"):
        for doc in docs.values():
            if doc["kind"] == kind:
                kube.create(doc)
    good = nano_search("good", namespace, zoo, fit_tasks, population=2, generations=1, publish=False, held_out=False,
                       expertSelector={"matchLabels": {"family": "bad-input-catalogue"}})
    kube.create(good)
    for doc in docs.values():
        if doc["kind"] == "MergedModel":
            kube.create(doc)

    def observe() -> dict[str, Observed]:
        out = {}
        for name, doc in docs.items():
            body = kube.get(doc["kind"], namespace, name) or {}
            out[name] = Observed(doc["kind"], body.get("status") or {}, events(kube, namespace, name, doc["kind"]))
        return out

    def settled() -> bool:
        observed = observe()
        return all(_meets(expected(p), observed[p.stem]) or _final(observed[p.stem]) for p in REPORTED)

    try:
        eventually(settled, "every reported input's condition and event", timeout=CATALOGUE_TIMEOUT, interval=2)
    except pytest.fail.Exception:
        pass  # each input's own test says what it is missing
    return namespace, observe(), finished(kube, namespace, "good")


def _has_default_account(core: k8s.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
        return True
    except k8s.ApiException:
        return False


def _final(observed: Observed) -> bool:
    """Nothing more will change: a finished search, a failed or exported model, a judged Expert."""
    phase = observed.status.get("phase")
    if observed.kind == "MergeSearch":
        return phase in ("Succeeded", "Failed") and bool(observed.events)
    if observed.kind == "MergedModel":
        return phase in ("Ready", "Failed")
    return observed.status.get("compatible") is not None


def _meets(wanted: dict[str, str], observed: Observed) -> bool:
    type_, status = wanted["condition"].split("=")
    found = condition(observed.status, type_)
    reason = wanted["reason"]
    return (found.get("status") == status and found.get("reason") == reason and wanted["message"] in found.get("message", "")
            and any(e["type"] == "Warning" and e["reason"] == reason for e in observed.events))


@pytest.mark.parametrize("path", REPORTED, ids=lambda p: p.stem)
def test_it_is_accepted_then_reported_with_a_named_condition_and_event(path, reported):
    _namespace, observed, _good = reported
    wanted, seen = expected(path), observed[path.stem]
    type_, status = wanted["condition"].split("=")
    found = condition(seen.status, type_)

    assert (found.get("status"), found.get("reason")) == (status, wanted["reason"]), seen.status
    assert wanted["message"] in found["message"], found["message"]
    warnings = [(e["reason"], e["message"]) for e in seen.events if e["type"] == "Warning"]
    assert any(reason == wanted["reason"] for reason, _ in warnings), f"no Warning event {wanted['reason']}: {warnings}"


def test_the_operator_keeps_serving_a_good_search_in_the_same_namespace(reported, kube):
    namespace, _observed, good = reported

    assert good["phase"] == "Succeeded" and good["evaluations"] == 2, good
    assert condition(good, "Degraded")["status"] == "False"
    assert [e["name"] for e in kube.get("MergeSearch", namespace, "good")["spec"]["experts"]] == ["add", "rev"]
