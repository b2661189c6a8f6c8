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
