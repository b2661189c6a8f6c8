"""The run report: what it shows, that its HTML loads cleanly in a real browser, and that the check can fail."""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.image import imread

from evomerge.report.figures import coefficients_figure, layer_path_figure, progress_figure
from evomerge.report.render import build_report, write_report
from evomerge.report.run_data import load_run
from tests.report import runs
from tests.report.chromium import check_page


@pytest.fixture(scope="module")
def report_files(tmp_path_factory):
    root = runs.write_run(tmp_path_factory.mktemp("report") / "run", layer_path=True)
    return write_report(root)


def test_report_has_every_section_of_a_finished_multi_objective_run(report_files):
    html = report_files.html.read_text()
    for title in ("Best merge", "Search progress", "Pareto front", "Evolved coefficients", "Layer path",
                  "Experts, uniform merge and evolved merge", "Top candidates", "Failed evaluations", "Best recipe"):
        assert f"<h2>{title}</h2>" in html
    assert {p.name for p in report_files.images} == {"progress.png", "pareto.png", "coefficients.png", "layer_path.png"}
    assert "CUDA out of memory" in html and runs.best_id() in html


def test_html_is_self_contained(report_files):
    html = report_files.html.read_text()
    references = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert references and all(r.startswith("data:image/png;base64,") for r in references)


def test_html_loads_in_headless_chromium_without_errors_or_broken_images(report_files):
    page = check_page(report_files.html)
    assert page.title == "evomerge report: run"
    assert page.console_errors == []
    assert len(page.images) == 4 and page.broken_images == []
    assert all(image["width"] > 200 for image in page.images)


def test_the_browser_check_catches_a_broken_image_and_a_console_error(report_files, tmp_path):
    html = report_files.html.read_text()
    broken = html.replace("data:image/png;base64,iVBORw0KGgo", "data:image/png;base64,AAAAAAAAAAAA", 1)
    broken = broken.replace("</body>", "<script>console.error('drawn wrong')</script></body>")
    page = tmp_path / "broken.html"
    page.write_text(broken)
    result = check_page(page)
    assert [i["index"] for i in result.broken_images] == [0]
    assert sorted(result.console_errors) == ["console.error: drawn wrong", "log: Failed to load resource: net::ERR_INVALID_URL"]


def test_markdown_links_the_png_files_written_beside_it(report_files):
    markdown = report_files.markdown.read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert sorted(linked) == sorted(p.name for p in report_files.images)
    for name in linked:
        pixels = imread(report_files.markdown.parent / name)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert "| **evolved merge** |" in markdown


def test_comparison_table_scores_each_row_by_the_spec_weights(tmp_path):
    run = load_run(runs.write_run(tmp_path / "run"))
    table = next(s.table for s in build_report(run).sections if s.title.startswith("Experts"))
    rows = {row[0]: row for row in table.rows}
    assert rows["expert e0"][1] == "0.275"  # (0.5 + 3 × 0.2) / 4 with tiny_b weighted 3
    assert rows["evolved merge"][2] == "0.565"  # held-out objectives are weighted equally
    assert table.emphasis == {2}


def test_progress_plot_draws_the_generation_summaries_and_the_held_out_star(tmp_path):
    run = load_run(runs.write_run(tmp_path / "run"))
    figure = progress_figure(run)
    fitness_axes = figure.axes[0]
    lines = {line.get_label(): line for line in fitness_axes.get_lines()}
    np.testing.assert_allclose(lines["best of generation"].get_ydata(), [s.best for s in run.generations])
    np.testing.assert_allclose(lines["mean of generation"].get_ydata(), [s.mean for s in run.generations])
    star = next(c for c in fitness_axes.collections if c.get_label() == "held-out, final merge")
    np.testing.assert_allclose(star.get_offsets(), [[5, run.held_out_fitness]])
    assert len(figure.axes) == 1 + len(run.spec.objectives) + 1  # one hidden axis completes the 2-column grid
    assert [a.get_title() for a in figure.axes[1:3]] == ["tiny_a/acc ↑", "tiny_b/acc ↑"]


def test_heatmap_cells_are_the_recipe_values(tmp_path):
    recipe = runs.recipe()
    figure = coefficients_figure(recipe, {"weight": (0.0, 1.0), "density": (0.1, 1.0)})
    weight_axes, density_axes = [a for a in figure.axes if a.images]
    expected = [[e["params"]["weight"][g] for g in runs.GROUPS] for e in recipe["experts"]]
    np.testing.assert_allclose(weight_axes.images[0].get_array(), expected)
    assert [t.get_text() for t in weight_axes.get_yticklabels()] == runs.EXPERTS
    assert [t.get_text() for t in density_axes.get_xticklabels()] == runs.GROUPS
    assert density_axes.images[0].norm.vmin == 0.1


def test_layer_path_plot_places_each_hop_at_its_model_layer_and_scale():
    figure = layer_path_figure(runs.LAYER_PATH)
    ax = figure.axes[0]
    by_model = {c.get_label(): c for c in ax.collections}
    np.testing.assert_allclose(by_model["e1"].get_offsets(), [[2, 1], [3, 2]])
    np.testing.assert_allclose(by_model["e1"].get_array(), [0.8, 1.25])
    np.testing.assert_allclose(by_model["merged"].get_offsets(), [[0, 0], [1, 1], [4, 2], [5, 3]])


def test_an_unfinished_run_still_renders(tmp_path):
    files = write_report(runs.write_run(tmp_path / "run", finished=False, comparison=False))
    html = files.html.read_text()
    assert "running or interrupted" in html
    assert "Evolved coefficients" not in html and "Search progress" in html
    assert check_page(files.html).broken_images == []


def test_a_run_without_any_generation_says_so(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    (root / "spec.json").write_text(__import__("json").dumps(runs.spec()))
    files = write_report(root)
    assert "No generation has finished yet." in files.html.read_text() and files.images == ()


def test_a_refined_run_shows_what_the_local_refinement_gained():
    from evomerge.report.run_data import RunData
    from evomerge.spec.merge_search import GenerationSummary

    spec = {**runs.spec(), "search": {**runs.spec()["search"], "refine": {"evaluations": 2}}}
    a = {"tiny_a/acc": 0.5, "tiny_b/acc": 0.5}
    better = {"tiny_a/acc": 0.9, "tiny_b/acc": 0.5}  # fitness 0.5 → 0.6
    events = [
        {"type": "ask", "round": 0, "generation": 0, "ids": ["c000000", "c000001"], "vectors": []},
        {"type": "result", "id": "c000000", "scores": a}, {"type": "result", "id": "c000001", "scores": None, "error": "x"},
        {"type": "tell", "ids": ["c000000", "c000001"]},
        {"type": "ask", "round": 0, "generation": 1, "ids": ["c000002", "c000003"], "vectors": [], "refine": True},
        {"type": "result", "id": "c000002", "scores": better}, {"type": "result", "id": "c000003", "scores": a},
    ]
    report = build_report(RunData.from_parts("refined", spec, events))
    section = next(s for s in report.sections if s.title == "Local refinement")
    assert section.text == ("2 evaluations of small steps around the search's best, c000000 at fitness 0.5: it found "
                            "c000002 at 0.6 (+0.1).")
    assert "the last 2 for the local refinement" in dict(report.facts.rows)["budget"]
    # The progress chart draws the refinement's steps apart, labelled, in the column after the search proper.
    summary = GenerationSummary(round=0, generation=0, count=2, failed=1, best=0.5, mean=0.5, worst=0.5).to_wire()
    charted = RunData.from_parts("refined", spec, [*events[:3], {"type": "generation", "summary": summary}, *events[3:]])
    points = {c.get_label(): c.get_offsets() for c in progress_figure(charted).axes[0].collections}
    np.testing.assert_allclose(points["local refinement"], [[1, 0.6], [1, 0.5]])
    np.testing.assert_allclose(points["candidates"], [[0, 0.5]])
    unrefined = build_report(RunData.from_parts("plain", runs.spec(), events[:4]))
    assert all(s.title != "Local refinement" for s in unrefined.sections)
