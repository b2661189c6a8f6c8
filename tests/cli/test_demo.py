"""`evomerge demo` end to end on the nano zoo (and, opt-in, the SmolLM2 world): a real search, its report, and the
comparison table it prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_evaluate import evomerge


def test_demo_searches_the_zoo_in_one_round_and_prints_the_comparison(tmp_path: Path):
    result = evomerge("demo", "--size", "nano", "--generations", "2", "--population", "4", "--run-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    # After the search, each comparison scoring says so on stderr as it ends: five references and the evolved merge,
    # both splits.
    scored = [line for line in result.stderr.splitlines() if line.startswith("comparison: scored ")]
    assert len(scored) == 12 and scored[0].startswith("comparison: scored expert add on the search objectives (1/12, ")
    assert scored[-1].startswith("comparison: scored evolved merge on the held-out objectives (12/12, ")
    run = tmp_path / "nano-evogm-0"
    spec = json.loads((run / "spec.json").read_text())
    assert spec["search"]["rounds"] == 1  # the demo keeps to what its options say, not EvoGM's two-round default
    assert spec["evaluation"]["engine"] == "transformers"  # the toy world's demo engine, unasked
    summary = json.loads((run / "summary.json").read_text())
    assert summary["evaluations"] == 8 and summary["generations"] == 2, summary
    assert (run / "report" / "report.html").is_file() and (run / "merged" / "README.md").is_file()
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 3}
    experts = sorted(name for name in rows if name.startswith("expert "))
    assert experts == ["expert add", "expert rev", "expert spell", "expert upper"]
    assert "uniform merge" in rows and "evolved merge" in rows
    evolved_search = float(rows["evolved merge"].split("│")[2])
    assert abs(evolved_search - summary["best"]["fitness"]) < 5e-4  # the table's evolved row is the search's best
    # The evolved merge against each reference on the held-out items: the paired test's p-value, as the table shows it.
    comparison = {r["name"]: r for r in json.loads((run / "comparison.json").read_text())}
    for name in [*experts, "uniform merge"]:
        test = comparison[name]["evolvedTest"]
        assert test["test"] == "mcnemar" and 0 < test["pValue"] <= 1
        # The tested objective is the held-out one the table shows: the mean over skills of each model.
        assert abs(test["candidate"] - float(rows["evolved merge"].split("│")[3])) < 1e-3
        assert abs(test["baseline"] - float(rows[name].split("│")[3])) < 1e-3
        assert rows[name].split("│")[4].strip() == f"{test['pValue']:.2g}" + ("*" if test["pValue"] < 0.05 else "")
    assert rows["evolved merge"].split("│")[4].strip() == "—" and "evolvedTest" not in comparison["evolved merge"]
    items = json.loads((run / "comparison_items.json").read_text())
    assert set(items) == set(comparison) and all(len(o["values"]) > 0 for row in items.values() for o in row.values())
    header = next(line for line in result.stdout.splitlines() if "model" in line and "held" in line)
    assert [cell.strip() for cell in header.split("┃")[5:-1]] == ["add", "rev", "spell"]  # without zoo_ and _search


def _vllm_servers_on(model_dir: Path) -> list[int]:
    """Pids of vLLM API servers serving `model_dir` (read from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"vllm.entrypoints.openai.api_server" in argv and str(model_dir).encode() in argv:
            pids.append(int(entry.name))
    return pids


def test_demo_with_engine_vllm_scores_through_one_real_server_and_stops_it(tmp_path: Path):
    from evomerge.zoo import build_zoo

    result = evomerge("demo", "--size", "nano", "--generations", "1", "--population", "2", "--run-dir", str(tmp_path),
                      "--quiet", "--engine", "vllm")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "nano-evogm-0"
    assert json.loads((run / "spec.json").read_text())["evaluation"]["engine"] == "vllm"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["evaluations"] == 2, summary
    # One server for the search, its held-out scores and the comparison table; gone once the demo exits.
    assert [p.name for p in (run / "server").iterdir()] == ["vllm-0.log"]
    assert _vllm_servers_on(build_zoo("nano", seed=0).base) == []
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 3}
    assert abs(float(rows["evolved merge"].split("│")[2]) - summary["best"]["fitness"]) < 5e-4


@pytest.mark.smollm2
@pytest.mark.timeout(3600)  # the comparison scores six merges on held-out splits of 400 items a skill: ~15 min on 1 core
def test_demo_on_the_smollm2_world_searches_its_lora_experts_in_the_evogm_setting(tmp_path: Path, smollm2_world):
    result = subprocess.run([sys.executable, "-m", "evomerge.cli.main", "demo", "--world", "smollm2", "--generations",
                             "1", "--population", "2", "--run-dir", str(tmp_path), "--quiet"],
                            capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "smollm2-evogm-0"
    spec = json.loads((run / "spec.json").read_text())
    assert spec["merge"]["method"] == "task_arithmetic" and spec["merge"]["bounds"]["weight"] == ["-1", "1"]
    assert spec["evaluation"]["engine"] == "vllm"  # the world's demo engine, unasked
    assert {e["format"] for e in spec["experts"]} == {"lora"}
    assert [o["task"] for o in spec["objectives"]][-1] == "smollm2_general_search"
    assert json.loads((run / "summary.json").read_text())["evaluations"] == 2
    assert (run / "report" / "report.html").is_file()
    rows = {line.split("│")[1].strip() for line in result.stdout.splitlines() if line.count("│") > 3}
    assert {"expert iso_date", "expert reverse", "expert sum_words", "expert upper", "uniform merge",
            "evolved merge"} <= rows


def test_demo_refuses_a_size_for_the_smollm2_world_and_an_unknown_world(tmp_path: Path):
    result = evomerge("demo", "--world", "smollm2", "--size", "nano", "--run-dir", str(tmp_path))
    assert result.returncode == 2 and "leave --size out" in result.stderr
    result = evomerge("demo", "--world", "large", "--run-dir", str(tmp_path))
    assert result.returncode == 2 and "choose one of toy, smollm2" in result.stderr


def test_the_smollm2_demo_searches_the_skills_and_the_general_check_but_not_the_distractors_task(tmp_path: Path):
    """The world writes the distractor's tasks (the landscape scores them); the demo's search never asks for them."""
    from evomerge.cli.demo import demo_search
    from evomerge.zoo import Zoo
    from evomerge.zoo.smollm2.recipe import RECIPE
    from evomerge.zoo.smollm2.tasks import GENERAL, GENERAL_METRIC, draw_evaluation_sets, write_world_tasks

    search, heldout = write_world_tasks(draw_evaluation_sets(RECIPE.everyone, 3, 3, seed=0), RECIPE.skills, tmp_path,
                                        tmp_path, seed=0)
    zoo = Zoo(root=tmp_path, base=tmp_path / "base", experts={},
              lora_adapters={n: tmp_path / "lora" / n for n in RECIPE.everyone}, tasks_dir=tmp_path,
              skills=RECIPE.skills, distractors=RECIPE.distractors, search_tasks=search, heldout_tasks=heldout,
              metric="exact_match", checks=(GENERAL,), check_metric=GENERAL_METRIC)
    spec = demo_search(zoo, "evogm", 0, 1, 2, engine="vllm", world="smollm2").spec
    assert [o.task for o in spec.objectives] == [search[k] for k in (*RECIPE.skills, GENERAL)]
    assert [o.task for o in spec.held_out] == [heldout[k] for k in (*RECIPE.skills, GENERAL)]
    assert [o.metric for o in spec.objectives] == ["exact_match"] * len(RECIPE.skills) + [GENERAL_METRIC]
    assert {e.name for e in spec.experts} == set(RECIPE.everyone)  # its expert is merged, its skill not searched for
