"""The README promises things the code must keep: generated blocks are fresh, the quick start is two commands."""

from __future__ import annotations

import re
from pathlib import Path

from evomerge.spec.reference import render_reference

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_spec_reference_is_generated_from_the_types():
    block = re.search(r"<!-- spec-reference:start -->\n(.*?)<!-- spec-reference:end -->", README, re.S)
    assert block, "README.md lost its spec-reference markers"
    assert block.group(1).rstrip("\n") == render_reference(), "run: python hack/update_readme.py"


def test_quick_start_is_two_commands_and_ci_calls_the_test_one():
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^(make \w+)", quick.split("```bash", 1)[1].split("```", 1)[0], re.M)
    assert commands == ["make demo", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_zoo_landscape_table_is_the_benchmarks_output_and_meets_every_criterion():
    block = re.search(r"<!-- zoo-landscape:start -->\n(.*?)<!-- zoo-landscape:end -->", README, re.S)
    assert block, "README.md lost its zoo-landscape markers"
    measured = (REPO / "benchmarks" / "results" / "zoo_landscape.md").read_text()
    assert block.group(1).rstrip("\n") == measured.rstrip("\n"), "run: python hack/update_readme.py"
    criteria = measured.split("**Criteria**", 1)[1]
    assert "seed 0 | seed 1 | seed 2" in criteria and "❌" not in criteria and criteria.count("✅") == 12


def _table_after(text: str, heading: str) -> list[list[str]]:
    """The first markdown table after a heading line, as rows of stripped cells (header first, rule dropped)."""
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[start:end]]
    return [rows[0]] + rows[2:]


def test_optimizers_block_is_the_benchmarks_output_and_evogm_reaches_randoms_best_with_a_tenth():
    block = re.search(r"<!-- optimizers:start -->\n(.*?)<!-- optimizers:end -->", README, re.S)
    assert block, "README.md lost its optimizers markers"
    measured = (REPO / "benchmarks" / "results" / "optimizers.md").read_text()
    assert block.group(1).rstrip("\n") == measured.rstrip("\n"), "run: python hack/update_readme.py"
    targets = _table_after(measured, "**Targets (issue #5)**")
    column = next(i for i, name in enumerate(targets[0]) if name.startswith("EvoGM reaches random's best with ≤ 10 %"))
    assert [row[0] for row in targets[1:]] == ["smooth", "rugged", "interacting"]
    for row in targets[1:]:
        cell = re.fullmatch(r"(✅|❌) ([\d.]+) % \((\d+)/(\d+) seeds\)", row[column])
        assert cell, f"{row[0]}: unreadable target cell {row[column]!r}"
        mark, share, reached, seeds = cell.groups()
        assert mark == "✅" and float(share) <= 10 and reached == seeds and int(seeds) >= 5, row
        # the cell must agree with the problem's own results table: median evaluations over random's budget
        results = _table_after(measured, f"**{row[0]}** — ")
        random_budget = int(re.search(r"% of random's (\d+)", " ".join(results[0])).group(1))  # type: ignore[union-attr]
        evogm = next(r for r in results[1:] if r[0] == "evogm")
        assert abs(100 * float(evogm[1]) / random_budget - float(share)) < 0.05, (row, evogm)
