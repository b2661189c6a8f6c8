"""A MergedModel's export Job and serving pair, as plain dicts."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from evomerge.catalogue.engines import ENGINES, SERVING_ENGINES
from evomerge.k8s.render_model import (
    recipe_lineage,
    render_export_configmap,
    render_export_job,
    render_serving_deployment,
    render_serving_service,
)
from evomerge.merge.recipe import MergeRecipe
from evomerge.k8s.settings import ClusterSettings
from evomerge.models.uris import UriError
from evomerge.spec.merge_search import MergeSearchSpec
from evomerge.spec.merged_model import MergedModel

RECIPE = {"method": "task_arithmetic", "baseUri": "pvc://models/base", "groups": ["all"], "options": {},
          "experts": [{"name": "a", "uri": "pvc://models/a", "params": {"weight": {"all": 0.4}}},
                      {"name": "b", "uri": "hf://org/b", "params": {"weight": {"all": 0.6}}}]}
SETTINGS = ClusterSettings(worker_image="worker:1", server_images={"vllm": "vllm:x", "tgi": "tgi:y"})


def model(version: int = 2, output: str = "pvc://merged/jp/v2", **serving) -> dict:
    return {
        "apiVersion": "evomerge.dev/v1alpha1", "kind": "MergedModel",
        "metadata": {"name": "jp", "namespace": "ns", "uid": "mm-uid"},
        "spec": {"search": "jp", "version": version, "recipe": RECIPE, "outputUri": output,
                 "serving": {"enabled": True, "engine": "vllm", **serving}},
        "status": {"version": version, "outputUri": output},
    }


SEARCH_SPEC = MergeSearchSpec.model_validate({
    "baseModel": {"uri": "pvc://models/base"}, "experts": [{"name": "a", "uri": "pvc://models/a"}, {"name": "b", "uri": "hf://org/b"}],
    "objectives": [{"task": "t"}], "heldOut": [{"task": "h"}],
    "storage": {"modelCache": {"persistentVolumeClaim": "cache"}, "output": {"uri": "pvc://merged/jp"}},
    "evaluation": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
})


def test_export_job_writes_to_the_versioned_output_on_a_writable_claim():
    job = render_export_job(model(), SEARCH_SPEC, SETTINGS)

    assert job["metadata"]["name"] == "jp-export-v2"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "mm-uid"
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["command"] == ["evomerge", "export-model", "--recipe", "/etc/evomerge/job/recipe.json",
                                    "--spec", "/etc/evomerge/job/spec.json", "--model", "/etc/evomerge/job/model.json",
                                    "--out", "/mnt/pvc/merged/jp/v2", "--exporter", "evomerge"]
    claims = {v["persistentVolumeClaim"]["claimName"]: v["persistentVolumeClaim"]["readOnly"]
              for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"models": True, "merged": False, "cache": True}
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "1"}}


def test_export_job_runs_the_exporter_the_search_chose():
    output = SEARCH_SPEC.storage.output.model_copy(update={"exporter": "mergekit"})
    search_spec = SEARCH_SPEC.model_copy(update={"storage": SEARCH_SPEC.storage.model_copy(update={"output": output})})

    (container,) = render_export_job(model(), search_spec, SETTINGS)["spec"]["template"]["spec"]["containers"]

    assert container["command"][-2:] == ["--exporter", "mergekit"]


def test_export_configmap_carries_the_recipe_the_searchs_held_out_tasks_and_the_models_card_facts():
    published = model()
    published["spec"].update(scores={"search": {"t/acc": "0.5"}}, lineage=[{"name": "a", "uri": "pvc://models/a", "revision": "r1"}])

    configmap = render_export_configmap(published, SEARCH_SPEC)

    assert json.loads(configmap["data"]["recipe.json"]) == RECIPE
    assert json.loads(configmap["data"]["spec.json"])["spec"]["heldOut"][0]["task"] == "h"
    card_facts = json.loads(configmap["data"]["model.json"])
    assert card_facts["metadata"]["name"] == "jp" and card_facts["spec"]["version"] == 2
    assert card_facts["spec"]["scores"]["search"] == {"t/acc": "0.5"} and card_facts["spec"]["lineage"][0]["revision"] == "r1"


@pytest.mark.parametrize("output", ["s3://bucket/jp/v2", "file:///scratch/jp/v2", "pvc:/v2", "pvc://merged", "jp/v2"])
def test_export_refuses_an_output_the_pod_would_not_keep(output):
    """Only a claim outlives the export pod: an object store, a path inside the pod, a claim without a path
    (or the remains of `pvc://` once `/v2` is appended) and a relative path are all refused, naming the fix."""
    with pytest.raises(UriError, match=r"write pvc://<claim>/<path>"):
        render_export_job(model(output=output), SEARCH_SPEC, SETTINGS)


def test_serving_deployment_rolls_when_the_exported_version_changes():
    v2, v3 = render_serving_deployment(model(2), SETTINGS), render_serving_deployment(model(3, "pvc://merged/jp/v3"), SETTINGS)

    (server,) = v2["spec"]["template"]["spec"]["containers"]
    assert server["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert server["args"][:2] == ["--model", "/mnt/pvc/merged/jp/v2"]
    assert v2["spec"]["template"]["metadata"]["annotations"]["evomerge.dev/version"] == "2"
    hash_key = "evomerge.dev/template-hash"
    assert v2["metadata"]["annotations"][hash_key] != v3["metadata"]["annotations"][hash_key]
    assert v2["spec"]["selector"]["matchLabels"] == v2["spec"]["template"]["metadata"]["labels"]
    assert "app.kubernetes.io/instance" not in v2["metadata"]["labels"]
    service = render_serving_service(model())
    assert service["spec"]["selector"] == v2["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]


def test_the_lineage_of_a_recipe_names_each_input_with_the_revision_the_spec_gives_it():
    spec = MergeSearchSpec.model_validate({
        "baseModel": {"uri": "pvc://models/base", "revision": "r-base"},
        "experts": [{"name": "a", "uri": "pvc://models/a", "revision": "r-a"}, {"name": "b", "uri": "hf://org/b"}],
        "merge": {"dataFlow": {"enabled": True, "modelA": {"uri": "pvc://paths/merged", "revision": "r-merged"}}},
        "objectives": [{"task": "t"}],
    })
    path = {"models": ["modelA", "a"], "hops": [["modelA", 0, 1.0], ["a", 1, 1.0]], "sources": {"modelA": "pvc://paths/merged"}}
    lineage = recipe_lineage(MergeRecipe.from_dict({**RECIPE, "layerPath": path}), spec)
    assert [(e.name, e.uri, e.revision) for e in lineage] == [
        ("base", "pvc://models/base", "r-base"), ("a", "pvc://models/a", "r-a"), ("b", "hf://org/b", None),
        ("modelA", "pvc://paths/merged", "r-merged"),  # a path model that is no expert: listed too, so it gets a hash
    ]
    exported = model()
    exported["spec"]["recipe"] = {**RECIPE, "layerPath": path}
    volumes = render_export_job(exported, spec, SETTINGS)["spec"]["template"]["spec"]["volumes"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v}
    assert claims == {"models", "paths", "merged"}  # the path model's claim too, beside the inputs' and the output's


@pytest.mark.parametrize("engine", SERVING_ENGINES)
def test_every_engine_the_spec_admits_for_serving_renders_its_own_server(engine):
    launch = ENGINES[engine].launch
    (server,) = render_serving_deployment(model(engine=engine), SETTINGS)["spec"]["template"]["spec"]["containers"]
    assert server["command"] == list(launch.command)
    assert server["args"][:2] == [launch.model_flag, "/mnt/pvc/merged/jp/v2"]
    assert server["image"] == SETTINGS.server_image(engine)
    assert server["readinessProbe"]["httpGet"]["path"] == launch.health


def test_serving_admits_exactly_the_engines_with_a_server_and_refuses_the_rest_naming_the_field():
    assert SERVING_ENGINES == tuple(n for n, e in ENGINES.items() if e.served)
    with pytest.raises(ValidationError, match="serving.engine"):
        MergedModel.model_validate(model(engine="transformers"))
