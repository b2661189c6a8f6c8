"""`evomerge evaluate-batch --adapter`: a server engine's scorer selects the candidate's combined LoRA adapter."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from evomerge.cli.cluster import register
from evomerge.evaluate.model import evaluate_model
from evomerge.evaluate.scores_message import decode_scores
from evomerge.k8s.render_search import spec_document
from evomerge.spec.merge_search import MergeSearchSpec, Objective
from tests.support.fake_servers import FakeTGI, FakeVLLM
from tests.support.tiny_models import build_lora_adapter

from .test_merge import evomerge, write_recipe

KEY = "tiny_colors/acc"


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
def test_the_pods_merge_serve_score_chain_over_a_combined_adapter(engine, tiny_family, tiny_tasks, tmp_path, monkeypatch):
    loras = {"l0": str(build_lora_adapter(tiny_family["base"], tmp_path / "l0", rank=4, seed=1, std=0.6)),
             "l1": str(build_lora_adapter(tiny_family["base"], tmp_path / "l1", rank=2, seed=2, std=0.6,
                                          targets=("q_proj", "o_proj", "up_proj")))}
    recipe_file = write_recipe(tmp_path / "recipe.json", "task_arithmetic", str(tiny_family["base"]), loras, **{"lambda": 1.2})
    for out, flags in (("merged", ()), ("adapter", ("--adapter",))):  # the merge init container, and a reference
        done = evomerge("merge", recipe_file, "--out", str(tmp_path / out), *flags)
        assert done.returncode == 0, done.stderr
    spec = MergeSearchSpec.model_validate({
        "baseModel": {"uri": str(tiny_family["base"])},
        "experts": [{"name": n, "uri": u, "format": "lora"} for n, u in loras.items()],
        "objectives": [{"task": "tiny_colors"}],
        "evaluation": {"engine": engine, "includePaths": [str(tiny_tasks)]},
    })
    (tmp_path / "spec.json").write_text(json.dumps(spec_document("tiny", spec)))
    recipe = json.loads((tmp_path / "recipe.json").read_text())
    (tmp_path / "recipes.json").write_text(json.dumps([{"id": "c1", "recipe": recipe}]))
    monkeypatch.setenv("EVOMERGE_TERMINATION_LOG", str(tmp_path / "termination-log"))
    app = typer.Typer()
    register(app)

    server_cls = FakeTGI if engine == "tgi" else FakeVLLM
    with server_cls(tiny_family["base"], adapters={"candidate": tmp_path / "adapter"}) as server:
        result = CliRunner().invoke(app, ["evaluate-batch", "--spec", str(tmp_path / "spec.json"), "--recipes",
                                          str(tmp_path / "recipes.json"), "--model-dir", str(tmp_path / "adapter"),
                                          "--server-url", server.url, "--adapter", "candidate"])

    assert result.exit_code == 0, result.output
    ((scores, error),) = decode_scores((tmp_path / "termination-log").read_text(), ["c1"], [KEY])
    assert error is None, error
    objective = [Objective(task="tiny_colors")]
    merged = evaluate_model(tmp_path / "merged", objective, [str(tiny_tasks)])[KEY]
    assert scores[KEY] == pytest.approx(merged, abs=1e-9)
    assert merged != evaluate_model(tiny_family["base"], objective, [str(tiny_tasks)])[KEY]  # the adapter matters
