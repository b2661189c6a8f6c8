"""Regenerate the generated blocks: README.md's spec reference, and docs/benchmarks.md's tables written by benchmarks."""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))

from evomerge.spec.reference import render_reference  # noqa: E402


# docs/benchmarks.md block → the benchmark result file that fills it (benchmarks/results/)
BENCHMARKS_PAGE = REPO / "docs" / "benchmarks.md"
BENCHMARK_BLOCKS = (
    ("zoo-landscape", "zoo_landscape.md"),
    ("smollm2-landscape", "smollm2_landscape.md"),
    ("optimizers", "optimizers.md"),
    ("optimizers-zoo", "optimizers_zoo.md"),
    ("refine", "refine.md"),
    ("async-eval", "async_eval.md"),
    ("operator-latency", "operator_latency.md"),
    ("served-eval", "served_eval.md"),
)


# README.md block → the benchmark result file that fills it
README_BLOCKS = (("optimizers-summary", "optimizers_summary.md"), ("optimizers-zoo-summary", "optimizers_zoo_summary.md"),
                 ("smollm2-targets", "smollm2_targets.md"))


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"no {name} markers")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def main() -> None:
    readme = REPO / "README.md"
    text = replace_block(readme.read_text(), "spec-reference", render_reference())
    for block, result in README_BLOCKS:
        text = replace_block(text, block, (REPO / "benchmarks" / "results" / result).read_text())
    readme.write_text(text)
    text = BENCHMARKS_PAGE.read_text()
    for block, result in BENCHMARK_BLOCKS:
        measured = REPO / "benchmarks" / "results" / result
        if measured.exists() and f"<!-- {block}:start -->" in text:
            text = replace_block(text, block, measured.read_text())
    BENCHMARKS_PAGE.write_text(text)


if __name__ == "__main__":
    main()
