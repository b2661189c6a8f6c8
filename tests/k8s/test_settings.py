"""Operator settings: the chart's EVOMERGE_* variables in, the same variables out to controller Jobs."""

from __future__ import annotations

import pytest

from evomerge.k8s.settings import ClusterSettings


def test_settings_round_trip_through_the_environment_passed_to_controllers():
    settings = ClusterSettings.from_env({
        "EVOMERGE_WORKER_IMAGE": "registry/worker:2",
        "EVOMERGE_EVALUATION_TTL_SECONDS": "120",
        "EVOMERGE_CONTROLLER_RESOURCES": '{"requests": {"cpu": "2"}}',
        "EVOMERGE_UNRELATED": "ignored",
    })

    assert settings.worker_image == "registry/worker:2" and settings.evaluation_ttl_seconds == 120
    assert settings.controller_resources == {"requests": {"cpu": "2"}}
    env = {e["name"]: e["value"] for e in settings.to_env()}
    assert ClusterSettings.from_env(env) == settings


@pytest.mark.parametrize("name, value, message", [
    ("EVOMERGE_EVALUATION_TTL_SECONDS", "soon", "expected an integer"),
    ("EVOMERGE_SCORER_RESOURCES", "[1]", "expected a JSON object"),
])
def test_a_bad_setting_names_the_variable(name, value, message):
    with pytest.raises(ValueError, match=f"{name}=.*{message}"):
        ClusterSettings.from_env({name: value})


def test_each_served_engine_has_an_image_variable_and_an_unset_one_runs_the_catalogues_pin():
    from evomerge.catalogue.engines import SERVED_ENGINES, server_image

    settings = ClusterSettings.from_env({"EVOMERGE_VLLM_IMAGE": "registry/vllm:mine", "EVOMERGE_TGI_IMAGE": ""})

    assert settings.server_image("vllm") == "registry/vllm:mine"
    assert all(settings.server_image(name) == server_image(name) for name in SERVED_ENGINES if name != "vllm")
    env = {e["name"]: e["value"] for e in settings.to_env()}
    assert {f"EVOMERGE_{name.upper()}_IMAGE" for name in SERVED_ENGINES} <= set(env)
    assert ClusterSettings.from_env(env) == settings


def test_an_image_for_no_served_engine_is_refused_naming_the_engines_there_are():
    from evomerge.catalogue.engines import SERVED_ENGINES

    with pytest.raises(ValueError, match="EVOMERGE_VLM_IMAGE: no served engine is named 'vlm' — servers.images .* takes "
                       + ", ".join(SERVED_ENGINES)):
        ClusterSettings.from_env({"EVOMERGE_VLM_IMAGE": "registry/vllm:mine"})
