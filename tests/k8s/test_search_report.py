"""The run report in the cluster: the controller, against a real API server with the evaluation pods played
by the test, keeps the report under storage.output.uri and links it from the MergeSearch status."""

from __future__ import annotations

import pytest

from evomerge.k8s.controller_main import run_controller
from evomerge.k8s.render_search import Epoch, render_epoch_configmap, render_namespace_accounts
from evomerge.k8s.search_report import SearchReport, report_uri
from evomerge.k8s.settings import ClusterSettings
from evomerge.runner.loop import Candidate, SearchOutcome
from evomerge.spec.merge_search import GenerationSummary, MergeSearchSpec
from test_operator import Node, climbable_score, eventually, kube, search_body, status_of  # noqa: F401 (kube: the fixture)


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    from tests.support.tiny_models import build_family

    return build_family(tmp_path_factory.mktemp("family"))


def run_epoch(kube, namespace: str, family, output_uri: str, **spec) -> dict:
    """Epoch 1 of a search run by the controller's own code, as its pod would; the finished status."""
    search = kube.create(search_body("jp", namespace, family, storage={"output": {"uri": output_uri}}, **spec))
    settings = ClusterSettings()
    for account in render_namespace_accounts(namespace, settings):
        kube.create(account)
    kube.create(render_epoch_configmap(search, Epoch(1, MergeSearchSpec.model_validate(search["spec"]))))
    node = Node(kube, namespace, climbable_score)
    node.start()
    try:
        run_controller(kube, namespace, "jp", 1, settings)
    finally:
        node.stop()
    return status_of(kube, namespace, "jp")


def test_the_controller_writes_the_report_beside_the_merges_and_the_status_links_it(kube, namespace, family, tmp_path):
    output = tmp_path / "published"

    status = run_epoch(kube, namespace, family, f"file://{output}")

    assert status["stopReason"] == "maxGenerations reached"
    assert status["report"] == report_uri(f"file://{output}") == f"file://{output}/report/report.html"
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
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the output directory should be")

    status = run_epoch(kube, namespace, family, f"file://{blocked}",
                       search={"algorithm": "random", "populationSize": 2, "maxGenerations": 1, "seed": 3})

    assert status["stopReason"] == "maxGenerations reached" and status["best"]["score"] is not None
    assert "report" not in status
    warnings = [e["message"] for e in kube.list("Event", namespace) if e["reason"] == "ReportFailed"]
    assert len(warnings) == 1  # once per reason, not once per generation
    assert f"file://{blocked}/report/report.html" in warnings[0] and "the search goes on" in warnings[0]


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
    report = SearchReport(None, search, 1, spec, f"file://{tmp_path}", ClusterSettings(), lambda: events)  # type: ignore[arg-type]
    try:
        report.refresh(SearchOutcome(best, [best], [summary], ""))
        page = eventually(lambda: (tmp_path / "report" / "report.html").exists()
                          and (tmp_path / "report" / "report.html").read_text(), "the redrawn report")
    finally:
        report.close()

    assert "running: generation 1 of epoch 1 done" in page and "c000000" in page
    assert report.written and page.rstrip().endswith("</html>")
