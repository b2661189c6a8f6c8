"""`evomerge demo` end to end on the nano zoo: a real search, its report, and the comparison table it prints."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_evaluate import evomerge


def test_demo_searches_the_zoo_in_one_round_and_prints_the_comparison(tmp_path: Path):
    result = evomerge("demo", "--size", "nano", "--generations", "2", "--population", "4", "--run-dir", str(tmp_path),
                      "--quiet")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "nano-evogm-0"
    spec = json.loads((run / "spec.json").read_text())
    assert spec["search"]["rounds"] == 1  # the demo keeps to what its options say, not EvoGM's two-round default
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
