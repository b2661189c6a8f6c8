"""The run report in the cluster: the controller, against a real API server with the evaluation pods played
by the test, keeps the report under storage.output.uri and links it from the MergeSearch status."""

from __future__ import annotations

import pytest

from evomerge.k8s.controller_main import run_controller
from evomerge.k8s.render_search import Epoch, render_epoch_configmap, render_namespace_accounts
from evomerge.k8s.search_report import SearchReport, numbered_on, report_uri
from evomerge.k8s.settings import ClusterSettings
from evomerge.runner.loop import Candidate, SearchOutcome
from evomerge.spec.merge_search import GenerationSummary, MergeSearchSpec
from test_operator import Node, climbable_score, eventually, kube, search_body, status_of  # noqa: F401 (kube: the fixture)


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    from tests.support.tiny_models import build_family

    return build_family(tmp_path_factory.mktemp("family"))


OUTPUT_URI = "pvc://published/jp"


def run_epoch(kube, namespace: str, family, claims, epoch: int = 1, **spec) -> dict:
    """An epoch of a search run by the controller's own code, as its pod would; the finished status.
    Epoch 1 creates the search; a later one starts from the status, as the operator freezes it. `claims` is
    the local directory behind the pod's claim mounts: the output lands in <claims>/published/jp."""
    settings = ClusterSettings(pvc_root=str(claims))
    output_uri = OUTPUT_URI
    if epoch == 1:
        search = kube.create(search_body("jp", namespace, family, **{"storage": {"output": {"uri": output_uri}}, **spec}))
        for account in render_namespace_accounts(namespace, settings):
            kube.create(account)
        offsets = {}
    else:
        search = kube.get("MergeSearch", namespace, "jp")
        status = search["status"]
        offsets = {k: int(status[k]) for k in ("round", "generation", "evaluations", "failedEvaluations")}
    kube.create(render_epoch_configmap(search, Epoch(epoch, MergeSearchSpec.model_validate(search["spec"]), [], offsets)))
    node = Node(kube, namespace, climbable_score, claims=claims)
    node.start()
    try:
        run_controller(kube, namespace, "jp", epoch, settings)
    finally:
        node.stop()
    return status_of(kube, namespace, "jp")


def comparison_rows(markdown: str) -> dict[str, list[str]]:
    """The report's comparison table: model → its cells."""
    section = markdown.split("Experts, uniform merge and evolved merge", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("|")]
    return {cells[0].strip(" *"): [c.strip(" *") for c in cells[1:]] for cells in rows[2:]}  # ** marks the evolved row


def test_the_controller_writes_the_report_beside_the_merges_and_the_status_links_it(kube, namespace, family, tmp_path):
    output = tmp_path / "published" / "jp"

    status = run_epoch(kube, namespace, family, tmp_path)

    assert status["stopReason"] == "maxGenerations reached"
    assert status["report"] == report_uri(OUTPUT_URI) == "pvc://published/jp/report/report.html"
    page = (output / "report" / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert f"{namespace}/jp, epoch 1" in page and "maxGenerations reached" in page  # the final state, not a redraw
    assert page.count('src="data:image/png;base64,') >= 2  # progress and coefficients, inline
    assert status["best"]["candidate"] in page
    markdown = (output / "report" / "report.md").read_text()
    assert "![fitness and objective scores per generation](progress.png)" in markdown
    assert (output / "report" / "progress.png").read_bytes().startswith(b"\x89PNG")
    assert not list((output / "report").glob(".staging-*"))  # written beside, renamed into place


def test_a_report_that_cannot_be_written_warns_and_the_search_still_finishes(kube, namespace, family, tmp_path):
    (tmp_path / "published").write_text("a file where the claim's directory should be")

    status = run_epoch(kube, namespace, family, tmp_path,
                       search={"algorithm": "random", "populationSize": 2, "maxGenerations": 1, "seed": 3})

    assert status["stopReason"] == "maxGenerations reached" and status["best"]["score"] is not None
    assert "report" not in status
    warnings = [e["message"] for e in kube.list("Event", namespace) if e["reason"] == "ReportFailed"]
    assert len(warnings) == 1  # once per reason, not once per generation
    assert "pvc://published/jp/report/report.html" in warnings[0] and "the search goes on" in warnings[0]


def test_a_generation_redraws_the_report_in_the_background(namespace, tmp_path):
    """Between generations the page shows the search so far; the search does not wait for the drawing."""
    search = search_body("jp", namespace)
    search["metadata"]["uid"] = "uid-1"
    spec = MergeSearchSpec.model_validate(search["spec"])
    recipe = {"method": "task_arithmetic", "baseUri": "file:///models/base", "groups": ["all"], "options": {},
              "experts": [{"name": "e0", "uri": "file:///models/e0", "params": {"weight": {"all": 0.7}}},
                          {"name": "e1", "uri": "file:///models/e1", "params": {"weight": {"all": 0.2}}}]}
    events = [{"type": "ask", "ids": ["c000000"], "round": 0, "generation": 0},
              {"type": "result", "id": "c000000", "scores": {"tiny_colors/acc": 0.5}, "error": None},
              {"type": "generation", "summary": {"round": 0, "generation": 0, "count": 1, "best": 0.5, "mean": 0.5}}]
    best = Candidate("c000000", 0, 0, [0.7, 0.2], recipe, "d", {"tiny_colors/acc": 0.5}, 0.5)
    summary = GenerationSummary(round=0, generation=0, count=1, best=0.5, mean=0.5)
    report = SearchReport(None, search, 1, spec, OUTPUT_URI, ClusterSettings(pvc_root=str(tmp_path)), lambda: events)  # type: ignore[arg-type]
    page_file = tmp_path / "published" / "jp" / "report" / "report.html"
    try:
        report.refresh(SearchOutcome(best, [best], [summary], ""))
        page = eventually(lambda: page_file.exists() and page_file.read_text(), "the redrawn report")
    finally:
        report.close()

    assert "running: generation 1 of epoch 1 done" in page and "c000000" in page
    assert report.written and page.rstrip().endswith("</html>")


def test_the_report_compares_each_expert_alone_and_the_uniform_merge_scored_in_comparison_jobs(kube, namespace, family, tmp_path):
    output = tmp_path / "published" / "jp"

    status = run_epoch(kube, namespace, family, tmp_path,
                       heldOut=[{"task": "tiny_shapes"}])

    # climbable_score is the weight of e0: 1 for e0 alone, 0 for e1 alone, 0.5 for their uniform merge.
    rows = comparison_rows((output / "report" / "report.md").read_text())
    assert list(rows) == ["expert e0", "expert e1", "uniform merge", "evolved merge"], rows
    assert [rows["expert e0"][0], rows["expert e1"][0], rows["uniform merge"][0]] == ["1", "0", "0.5"]
    assert [rows["expert e0"][1], rows["expert e1"][1], rows["uniform merge"][1]] == ["1", "0", "0.5"]  # held-out too
    evolved = rows["evolved merge"]
    best = float(status["best"]["score"])
    assert float(evolved[0]) == pytest.approx(best, abs=1e-4) and float(evolved[1]) == pytest.approx(best, abs=1e-4)
    summary = (output / "report" / "report.md").read_text().split("Experts, uniform merge", 1)[0]
    assert f"| held-out fitness | {evolved[1]} |" in summary  # the final merge's held-out score, as `evomerge run` shows it
    jobs = kube.list("Job", namespace, "evomerge.dev/component=comparison")
    assert sorted(j["metadata"]["annotations"]["evomerge.dev/candidates"] for j in jobs) == ["cmp-h0,cmp-h1", "cmp-h2,cmp-h3", "cmp-s0,cmp-s1", "cmp-s2"]
    scored = [e for e in kube.list("Event", namespace) if e["reason"] == "ScoringReferences"]
    assert len(scored) == 1 and "compareReferences: false" in scored[0]["message"]


def test_compare_references_false_runs_no_comparison_job(kube, namespace, family, tmp_path):
    output = tmp_path / "published" / "jp"

    run_epoch(kube, namespace, family, tmp_path, search={"algorithm": "random", "populationSize": 2, "maxGenerations": 1, "seed": 3},
              storage={"output": {"uri": OUTPUT_URI, "compareReferences": False}})

    assert kube.list("Job", namespace, "evomerge.dev/component=comparison") == []
    assert "Experts, uniform merge and evolved merge" not in (output / "report" / "report.md").read_text()


def test_a_later_epoch_reports_every_epoch_numbered_on_as_the_status_numbers_them(kube, namespace, family, tmp_path):
    output = tmp_path / "published" / "jp"
    random = {"algorithm": "random", "populationSize": 2, "maxGenerations": 1, "seed": 3}
    first = run_epoch(kube, namespace, family, tmp_path, search=random,
                      storage={"output": {"uri": OUTPUT_URI, "compareReferences": False}})

    second = run_epoch(kube, namespace, family, tmp_path, epoch=2)

    assert (first["generation"], second["generation"]) == (1, 2)
    markdown = (output / "report" / "report.md").read_text()
    assert f"{namespace}/jp, epoch 2" in markdown
    top = markdown.split("Top candidates", 1)[1]
    ids = {line.split("|")[1].strip().strip("*") for line in top.splitlines() if line.startswith("| ")}
    assert {"e1-c000000", "e1-c000001", "c000000", "c000001"} <= ids, ids
    epoch_one = [line for line in top.splitlines() if "e1-c000000" in line][0].split("|")
    epoch_two = [line for line in top.splitlines() if "| c000000" in line or "**c000000**" in line][0].split("|")
    assert (epoch_one[2].strip(), epoch_one[3].strip()) == ("0", "0")
    assert (epoch_two[2].strip(), epoch_two[3].strip()) == ("1", "1")  # round and generation after epoch 1's


def test_numbered_on_moves_rounds_generations_and_ids_but_not_scores():
    events = [{"type": "ask", "round": 0, "generation": 1, "ids": ["c000003"], "vectors": [[0.1]]},
              {"type": "result", "id": "c000003", "scores": {"k": 0.5}, "error": None},
              {"type": "tell", "ids": ["c000003"]},
              {"type": "generation", "summary": {"round": 0, "generation": 1, "count": 1, "best": "0.5"}}]

    moved = numbered_on(events, {"round": 2, "generation": 5, "evaluations": 9}, "e1-")

    assert moved[0] == {"type": "ask", "round": 2, "generation": 6, "ids": ["e1-c000003"], "vectors": [[0.1]]}
    assert moved[1] == {"type": "result", "id": "e1-c000003", "scores": {"k": 0.5}, "error": None}
    assert moved[2] == {"type": "tell", "ids": ["e1-c000003"]}
    assert moved[3]["summary"] == {"round": 2, "generation": 6, "count": 1, "best": "0.5"}
    assert events[0]["ids"] == ["c000003"]  # the history itself is untouched
