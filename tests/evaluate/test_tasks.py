"""Tasks are loaded once, subsampled from the seed, and their metrics read without guessing."""

from __future__ import annotations

import pytest

from evomerge.evaluate.tasks import TaskError, TaskSuite, draw_indices, read_metric
from evomerge.spec.merge_search import Objective


def test_draw_indices_is_seeded_sorted_and_stable():
    first = draw_indices(100, 10, seed=3, task_name="gsm8k")
    assert first == draw_indices(100, 10, seed=3, task_name="gsm8k")
    assert first == sorted(first) and len(set(first)) == 10 and all(0 <= i < 100 for i in first)
    assert first != draw_indices(100, 10, seed=4, task_name="gsm8k")
    assert first != draw_indices(100, 10, seed=3, task_name="mgsm")
    # Seeded by a string, not hash(): the same in every process. Pinned so a changed rule cannot slip by
    # (it would silently give resumed searches and evaluation pods different items).
    assert draw_indices(20, 3, seed=0, task_name="t") == [5, 13, 18]


def test_no_subsample_when_the_limit_covers_the_task():
    assert draw_indices(12, None, 0, "t") is None
    assert draw_indices(12, 12, 0, "t") is None
    assert draw_indices(12, 50, 0, "t") is None


def test_the_largest_limit_of_a_task_wins_and_no_limit_wins_over_all(task_dir):
    limited = TaskSuite.build([Objective(task="tiny_next", metric="acc", limit=2),
                               Objective(task="tiny_next", metric="perplexity", limit=4)], [str(task_dir)])
    assert limited.documents == {"tiny_next": 4}
    unlimited = TaskSuite.build([Objective(task="tiny_next", metric="acc", limit=2),
                                 Objective(task="tiny_next", metric="perplexity")], [str(task_dir)])
    assert unlimited.documents == {"tiny_next": 6} and unlimited.samples == {}


def test_only_plain_loglikelihood_tasks_need_is_greedy(task_dir):
    from tests.evaluate.support import ALL_TYPES

    assert TaskSuite.build(ALL_TYPES, [str(task_dir)]).greedy_tasks == {"tiny_next"}


def test_unknown_task_names_the_fix(task_dir):
    with pytest.raises(TaskError, match="unknown lm-eval task.*tiny_nope.*evaluation.includePaths"):
        TaskSuite.build([Objective(task="tiny_nope")], [str(task_dir)])


def test_a_tag_is_refused_with_the_fix(tmp_path):
    from tests.evaluate.support import write_task

    write_task(tmp_path, "tiny_next")
    (tmp_path / "tiny_next.yaml").write_text((tmp_path / "tiny_next.yaml").read_text() + "tag: tiny_family_tag\n")
    with pytest.raises(TaskError, match="'tiny_family_tag' is an lm-eval tag.*list its tasks"):
        TaskSuite.build([Objective(task="tiny_family_tag")], [str(tmp_path)])


RESULTS = {"results": {"gsm8k": {
    "alias": "gsm8k", "exact_match,strict-match": 0.5, "exact_match_stderr,strict-match": "N/A",
    "exact_match,flexible-extract": 0.75, "exact_match_stderr,flexible-extract": "N/A",
}, "arc": {"acc,none": 0.25, "acc_stderr,none": 0.01, "acc_norm,none": 0.3}}}


def test_read_metric_accepts_a_bare_name_when_it_is_unambiguous():
    assert read_metric(RESULTS, Objective(task="arc", metric="acc")) == 0.25
    assert read_metric(RESULTS, Objective(task="arc", metric="acc_norm")) == 0.3


def test_read_metric_asks_for_the_filter_when_several_report_the_metric():
    with pytest.raises(TaskError, match="several filters.*metric: exact_match,flexible-extract"):
        read_metric(RESULTS, Objective(task="gsm8k", metric="exact_match"))
    assert read_metric(RESULTS, Objective(task="gsm8k", metric="exact_match,flexible-extract")) == 0.75


def test_read_metric_lists_what_the_task_reports():
    with pytest.raises(TaskError, match="reports no metric 'f1'; it reports acc, acc_norm"):
        read_metric(RESULTS, Objective(task="arc", metric="f1"))
    with pytest.raises(TaskError, match="no results under 'mmlu'"):
        read_metric(RESULTS, Objective(task="mmlu"))


def test_a_group_and_one_of_its_tasks_can_both_be_objectives(tiny_family, tmp_path):
    from evomerge.evaluate.model import evaluate_model
    from tests.evaluate.support import write_all_task_types

    tasks = write_all_task_types(tmp_path)
    (tasks / "tiny_group.yaml").write_text(
        "group: tiny_group\ntask: [tiny_colors, tiny_next]\n"
        "aggregate_metric_list:\n  - metric: acc\n    aggregation: mean\n    weight_by_size: false\n"
    )
    objectives = [Objective(task="tiny_group", metric="acc", limit=2), Objective(task="tiny_next", metric="acc", limit=4)]
    suite = TaskSuite.build(objectives, [str(tasks)])
    assert suite.documents == {"tiny_colors": 2, "tiny_next": 4}
    scores = evaluate_model(tiny_family["base"], objectives, [str(tasks)])
    alone = evaluate_model(tiny_family["base"], [Objective(task="tiny_colors", metric="acc", limit=2),
                                                 Objective(task="tiny_next", metric="acc", limit=4)], [str(tasks)])
    assert scores["tiny_next/acc"] == alone["tiny_next/acc"]
    assert scores["tiny_group/acc"] == pytest.approx((alone["tiny_colors/acc"] + alone["tiny_next/acc"]) / 2)
