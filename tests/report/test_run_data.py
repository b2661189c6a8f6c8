"""Reading a run directory: the numbers the report draws come from the run's own files."""

from __future__ import annotations

import json

import pytest

from evomerge.evaluate.items import ObjectiveItems
from evomerge.evaluate.paired import PairedTest
from evomerge.report.run_data import RunData, RunDataError, load_run, write_comparison
from evomerge.runner.compare import Comparison
from tests.report import runs


def test_candidates_fitness_and_best_come_from_the_history_and_summary(tmp_path):
    run = load_run(runs.write_run(tmp_path / "run"))
    assert len(run.candidates) == runs.POPULATION * runs.GENERATIONS * runs.ROUNDS
    assert [c.id for c in run.failed] == [runs.FAILED_ID]
    assert [c.id for c in run.candidates if c.cached] == [runs.CACHED_ID]
    by_id = {c.id: c for c in run.candidates}
    assert by_id["c000002"].fitness == pytest.approx(runs.fitness_of(runs.scores_of(2)))
    assert (by_id["c000006"].round, by_id["c000006"].generation) == (0, 1)
    assert (by_id["c000013"].round, by_id["c000013"].generation) == (1, 3)
    assert run.best.id == runs.best_id()
    assert run.held_out == runs.HELD_OUT_SCORES
    assert run.held_out_fitness == pytest.approx(sum(runs.HELD_OUT_SCORES.values()) / 2)
    assert [s.best for s in run.generations] == pytest.approx(
        [max(runs.fitness_of(runs.scores_of(g * 4 + m)) for m in range(4) if f"c{g * 4 + m:06d}" != runs.FAILED_ID)
         for g in range(6)]
    )
    assert run.round_starts() == [(1, 3)]


def test_per_objective_series_are_best_and_mean_of_each_generation(tmp_path):
    run = load_run(runs.write_run(tmp_path / "run"))
    series = run.per_objective(run.spec.objectives[0])
    assert [g for g, _, _ in series] == list(range(6))
    generation, best, mean = series[2]
    values = [runs.scores_of(8 + m)["tiny_a/acc"] for m in range(4)]
    assert best == pytest.approx(max(values)) and mean == pytest.approx(sum(values) / 4)
    failed_generation = run.per_objective(run.spec.objectives[0])[1]
    assert failed_generation[2] == pytest.approx(sum(runs.scores_of(i)["tiny_a/acc"] for i in (4, 6, 7)) / 3)


def test_pareto_front_keeps_exactly_the_non_dominated_candidates(tmp_path):
    spec = runs.spec()
    events = [{"type": "ask", "round": 0, "generation": 0, "ids": ["a", "b", "c", "d", "e"], "vectors": []}]
    points = {"a": (0.9, 0.1), "b": (0.5, 0.5), "c": (0.4, 0.4), "d": (0.1, 0.9), "e": (0.5, 0.5)}
    for cid, (x, y) in points.items():
        events.append({"type": "result", "id": cid, "scores": {"tiny_a/acc": x, "tiny_b/acc": y}, "error": None})
    run = RunData.from_parts("p", spec, events)
    assert sorted(c.id for c in run.pareto_front()) == ["a", "b", "d"]  # c is dominated, e duplicates b


def test_a_minimised_objective_counts_lower_as_better(tmp_path):
    spec = runs.spec()
    spec["objectives"] = [{"task": "tiny_a", "metric": "acc"}, {"task": "tiny_b", "metric": "loss", "direction": "minimize"}]
    events = [{"type": "ask", "round": 0, "generation": 0, "ids": ["a", "b"], "vectors": []},
              {"type": "result", "id": "a", "scores": {"tiny_a/acc": 0.5, "tiny_b/loss": 1.0}, "error": None},
              {"type": "result", "id": "b", "scores": {"tiny_a/acc": 0.5, "tiny_b/loss": 2.0}, "error": None}]
    run = RunData.from_parts("m", spec, events)
    assert [c.id for c in run.pareto_front()] == ["a"]
    assert run.per_objective(run.spec.objectives[1]) == [(0, 1.0, 1.5)]


def test_an_unfinished_run_has_no_summary_and_the_top_fitness_is_best(tmp_path):
    run = load_run(runs.write_run(tmp_path / "run", finished=False))
    assert run.summary == {} and run.best_recipe is None and run.held_out_fitness is None
    assert run.best.id == runs.best_id()


def test_a_torn_last_line_is_ignored_like_the_runner_does(tmp_path):
    root = runs.write_run(tmp_path / "run")
    with (root / "history.jsonl").open("a") as handle:
        handle.write('{"type": "result", "id": "c0000')
    assert len(load_run(root).candidates) == 24


def test_damaged_history_and_missing_spec_name_the_file(tmp_path):
    root = runs.write_run(tmp_path / "run")
    lines = (root / "history.jsonl").read_text().splitlines()
    lines[3] = "{not json"
    (root / "history.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunDataError, match="history.jsonl:4"):
        load_run(root)
    with pytest.raises(RunDataError, match="no spec.json"):
        load_run(tmp_path / "elsewhere")


def test_comparisons_are_written_for_the_report(tmp_path):
    rows = [Comparison("uniform merge", {"tiny_a/acc": 0.4}, {"tiny_a_test/acc": 0.3})]
    path = write_comparison(tmp_path, rows)
    assert json.loads(path.read_text()) == [{"name": "uniform merge", "search": {"tiny_a/acc": 0.4}, "heldOut": {"tiny_a_test/acc": 0.3}}]
    root = runs.write_run(tmp_path / "run", comparison=False)
    write_comparison(root, rows)
    assert [r.name for r in load_run(root).comparison] == ["uniform merge"]


def test_the_evolved_merges_paired_test_and_the_items_behind_it_are_kept(tmp_path):
    items = {"tiny_a_test/acc": ObjectiveItems("mean", {"tiny_a_test:0": 1, "tiny_a_test:1": 0})}
    test = PairedTest("mcnemar", 2, 0.5, 1.0, 1.0, (1, 0))
    root = runs.write_run(tmp_path / "run", comparison=False)
    write_comparison(root, [Comparison("expert a", {"tiny_a/acc": 0.4}, {"tiny_a_test/acc": 0.5}, test, items)])

    (row,) = load_run(root).comparison
    assert row.evolved_test == test
    assert json.loads((root / "comparison_items.json").read_text()) == {
        "expert a": {"tiny_a_test/acc": {"aggregation": "mean", "values": {"tiny_a_test:0": 1, "tiny_a_test:1": 0}}}}
