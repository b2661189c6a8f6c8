"""The whole chain for real: MergeSearch → controller Job → evaluation Jobs → scores → status generations →
MergedModel → export, with the `transformers` engine on the nano zoo, for EvoGM and random search.

Every process is the real one (`evomerge operator`, `controller`, `evaluate-batch`, `export-model`), each
with only the credentials its pod has; see conftest.py.
"""

from __future__ import annotations

import json

import pytest

from .conftest import CHAIN_ALGORITHMS, OUTPUT_CLAIM
from .helpers import FIT_KEY, HELD_OUT_KEY, condition, events, jobs


@pytest.mark.parametrize("algorithm", CHAIN_ALGORITHMS)
def test_a_search_runs_to_a_published_merged_model(chain, kube, published, operator, algorithm):
    run = chain[algorithm]
    spec = run.body["spec"]
    population, generations = spec["search"]["populationSize"], spec["search"]["maxGenerations"]
    status = run.status

    assert status["phase"] == "Succeeded", status
    assert condition(status, "Ready")["status"] == "True" and condition(status, "Degraded")["status"] == "False"
    assert (status["evaluations"], status["failedEvaluations"], status["generation"]) == (population * generations, 0, generations)
    assert [(g["generation"], g["count"], g["failed"]) for g in status["generations"]] == [(i, population, 0) for i in range(generations)]

    # The best candidate is the lowest bits-per-byte the scorers reported (the objective is minimized).
    scored = {e["id"]: e["scores"][FIT_KEY] for e in run.history if e["type"] == "result"}
    assert len(scored) == population * generations and len(set(scored.values())) > 1
    best = status["best"]
    assert best["candidate"] == min(scored, key=scored.get)
    assert float(best["scores"][FIT_KEY]) == pytest.approx(scored[best["candidate"]], rel=1e-6)
    asked = [e for e in run.history if e["type"] == "ask"]
    assert sum(len(e["ids"]) for e in asked) == population * generations

    # The MergedModel is that recipe, exported to the claim and scored on the held-out task.
    model = run.model
    assert model["status"]["phase"] == "Ready", model["status"]
    assert model["spec"]["recipe"] == best["recipe"] and model["spec"]["version"] == 1
    assert model["metadata"]["ownerReferences"][0]["kind"] == "MergeSearch"
    held_out = float(model["status"]["scores"]["heldOut"][HELD_OUT_KEY])
    assert 0 < held_out < 20
    lineage = {entry["name"]: entry for entry in model["status"]["lineage"]}
    assert set(lineage) == {"base", "add", "rev"} and all(len(e["sha256"]) == 64 for e in lineage.values())
    exported = published / run.namespace / run.name / "v1"
    assert json.loads((exported / "config.json").read_text())["num_hidden_layers"] == 2
    assert list(exported.glob("*.safetensors"))
    card = (exported / "README.md").read_text()  # the model card, with what the export measured
    assert f"| held-out | {HELD_OUT_KEY.split('/')[0]} | bits_per_byte ↓ | 12 |" in card and lineage["add"]["sha256"] in card
    assert (exported / "mergekit_config.yml").exists()
    reasons = [e["reason"] for e in events(kube, run.namespace, run.name, "MergeSearch")]
    assert {"EpochStarted", "Succeeded", "Published"} <= set(reasons), reasons
    assert "Exported" in [e["reason"] for e in events(kube, run.namespace, run.name, "MergedModel")]
    best_score = f'evomerge_search_best_score{{namespace="{run.namespace}",objective="fitness",search="{run.name}"}}'
    assert best_score in operator.metrics()  # what the chart's ServiceMonitor scrapes


@pytest.mark.parametrize("algorithm", CHAIN_ALGORITHMS)
def test_each_pod_ran_the_real_command_with_only_its_own_credentials(chain, kube, algorithm):
    run = chain[algorithm]
    by_component: dict[str, list] = {}
    for record in run.pods:
        component = record.labels.get("evomerge.dev/component")
        by_component.setdefault(component, []).append(record)
    (controller,) = by_component["controller"]
    evaluations = by_component["evaluation"]
    (export,) = by_component["export"]

    # The controller: its own ServiceAccount's token (what the operator bound), nothing more.
    process = controller.containers["controller"]
    assert process.argv[1:4] == ["controller", "--search", f"{run.namespace}/{run.name}"]
    assert controller.spec["serviceAccountName"] == "evomerge-controller" and process.credentials
    assert process.exit_code == 0 and process.message.startswith("finished (maxGenerations reached)")

    # Evaluation pods: no token mounted, no credentials; scores leave as the termination message.
    generations = run.body["spec"]["search"]["maxGenerations"]
    eval_jobs = [j for j in jobs(kube, run.namespace, "evaluation") if j["metadata"]["labels"]["evomerge.dev/search"] == run.name]
    assert len(evaluations) == len(eval_jobs) == generations  # one Job per generation, each ran once
    for record in evaluations:
        assert record.spec["automountServiceAccountToken"] is False
        assert not any("projected" in v for v in record.spec["volumes"])
        score = record.containers["score"]
        assert score.argv[1] == "evaluate-batch" and not score.credentials and "KUBECONFIG" not in score.env
        assert score.exit_code == 0 and json.loads(score.message)["k"] == [FIT_KEY]
        assert record.owner[0] == "Job"
    (controller_job,) = [j for j in jobs(kube, run.namespace, "controller") if j["metadata"]["labels"]["evomerge.dev/search"] == run.name]
    assert {j["metadata"]["ownerReferences"][0]["uid"] for j in eval_jobs} == {controller_job["metadata"]["uid"]}

    # The export: no token either; it wrote to the claim mounted at the pod's own path.
    process = export.containers["export"]
    assert process.argv[1] == "export-model" and not process.credentials and process.exit_code == 0
    assert process.argv[process.argv.index("--out") + 1].endswith(f"/mnt/pvc/{OUTPUT_CLAIM}/{run.namespace}/{run.name}/v1")


@pytest.mark.parametrize("algorithm", CHAIN_ALGORITHMS)
def test_the_report_beside_the_merge_compares_it_with_each_expert_and_the_uniform_merge(chain, published, algorithm):
    run = chain[algorithm]
    markdown = (published / run.namespace / run.name / "report" / "report.md").read_text()
    assert run.status["report"] == f"pvc://published/{run.namespace}/{run.name}/report/report.html"

    # model | search fitness | held-out fitness | search <fit task> | held-out <held-out task>
    section = markdown.split("Experts, uniform merge and evolved merge", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("|")][2:]
    rows = {cells[0].strip(" *"): [c.strip(" *") for c in cells[1:]] for cells in lines}
    assert list(rows) == ["expert add", "expert rev", "uniform merge", "evolved merge"], rows
    assert all(cell != "—" for cells in rows.values() for cell in cells), rows  # every reference scored on both splits
    best = run.status["best"]
    assert float(rows["evolved merge"][2]) == pytest.approx(float(best["scores"][FIT_KEY]), abs=1e-4)
    held_out = float(run.model["status"]["scores"]["heldOut"][HELD_OUT_KEY])  # the export Job's own scoring
    assert float(rows["evolved merge"][3]) == pytest.approx(held_out, rel=1e-3)
    assert len({rows[n][2] for n in rows}) > 1  # the references differ: they were really scored

    comparisons = [r for r in run.pods if r.labels.get("evomerge.dev/component") == "comparison"]
    assert comparisons and all(r.spec["automountServiceAccountToken"] is False for r in comparisons)
    held_out_runs = [r for r in comparisons if "--held-out" in r.containers["score"].argv]
    assert held_out_runs and all(r.containers["score"].exit_code == 0 for r in comparisons)
