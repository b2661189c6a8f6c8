"""The README and docs/benchmarks.md promise things the code must keep: generated blocks are fresh, the quick start
is two commands."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from evomerge.spec.reference import render_reference

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
BENCHMARKS = (REPO / "docs" / "benchmarks.md").read_text()  # the measured blocks hack/update_readme.py copies


def test_spec_reference_is_generated_from_the_types():
    block = re.search(r"<!-- spec-reference:start -->\n(.*?)<!-- spec-reference:end -->", README, re.S)
    assert block, "docs/benchmarks.md lost its spec-reference markers"
    assert block.group(1).rstrip("\n") == render_reference(), "run: python hack/update_readme.py"


def test_quick_start_is_two_commands_and_ci_calls_the_test_one():
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^(make \w+)", quick.split("```bash", 1)[1].split("```", 1)[0], re.M)
    assert commands == ["make demo", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_zoo_optimizers_block_and_readme_summary_are_the_benchmarks_output_over_ten_seeds_of_two_objective_sets():
    block = re.search(r"<!-- optimizers-zoo:start -->\n(.*?)<!-- optimizers-zoo:end -->", BENCHMARKS, re.S)
    assert block, "docs/benchmarks.md lost its optimizers-zoo markers"
    measured = (REPO / "benchmarks" / "results" / "optimizers_zoo.md").read_text()
    assert block.group(1).rstrip("\n") == measured.rstrip("\n"), "run: python hack/update_readme.py"
    sets = re.findall(r"^\*\*(\w+)\*\* — objectives [^;]+; (\d+) seeds \((\d+) with random", measured, re.M)
    assert len(sets) >= 2 and all(int(seeds) >= 10 and int(random) >= 1 for _, seeds, random in sets), sets  # issue 22
    for name, _, _ in sets:
        results = _table_after(measured, f"**{name}**")
        assert [row[0] for row in results[1:]] == ["evogm", "cmaes", "ga", "random"]
    summary = re.search(r"<!-- optimizers-zoo-summary:start -->\n(.*?)<!-- optimizers-zoo-summary:end -->", README, re.S)
    assert summary, "README.md lost its optimizers-zoo-summary markers"
    short = (REPO / "benchmarks" / "results" / "optimizers_zoo_summary.md").read_text()
    assert summary.group(1).rstrip("\n") == short.rstrip("\n"), "run: python hack/update_readme.py"
    verdicts = [row.strip("|").split(" | ")[2:] for row in short.splitlines()[2:] if row.startswith("| CMA-ES") or
                row.startswith("| the GA")]
    assert len(verdicts) == 4 and all(len(cells) == len(sets) for cells in verdicts)  # search, held-out × both peers
    assert all(re.fullmatch(r"\s*(\*\*win\*\*|\*\*loss\*\*|tie) \d+/\d+/\d+, p = \S+\s*", c) for row in verdicts for c in row)


def test_async_evaluation_block_is_the_benchmarks_output_and_async_saves_wall_time_everywhere():
    block = re.search(r"<!-- async-eval:start -->\n(.*?)<!-- async-eval:end -->", BENCHMARKS, re.S)
    assert block, "docs/benchmarks.md lost its async-eval markers"
    measured = (REPO / "benchmarks" / "results" / "async_eval.md").read_text()
    assert block.group(1).rstrip("\n") == measured.rstrip("\n"), "run: python hack/update_readme.py"
    table = [[c.strip() for c in line.strip("|").split("|")] for line in measured.splitlines() if line.startswith("|")]
    rows = [dict(zip(table[0], row)) for row in table[2:]]
    assert {r["optimizer"] for r in rows} == {"evogm", "ga", "random"}
    for row in rows:
        generational, asynchronous = float(row["wall, generational"]), float(row["wall, async"])
        assert asynchronous < generational, row
        assert abs(float(row["async / generational"].strip("*")) - asynchronous / generational) < 0.006, row


def test_operator_block_is_the_benchmarks_output_and_meets_issue_7s_targets():
    block = re.search(r"<!-- operator-latency:start -->\n(.*?)<!-- operator-latency:end -->", BENCHMARKS, re.S)
    assert block, "docs/benchmarks.md lost its operator-latency markers"
    measured = (REPO / "benchmarks" / "results" / "operator_latency.md").read_text()
    assert block.group(1).rstrip("\n") == measured.rstrip("\n"), "run: python hack/update_readme.py"
    targets = [line for line in measured.splitlines() if re.search(r"\| (p99 )?< \d s (met|MISSED) \|$", line)]
    assert len(targets) == 4, targets  # first evaluation Job (cold, warm), p99 of creates and of suspends
    assert all(line.endswith(" met |") for line in targets), targets


def test_zoo_landscape_table_is_the_benchmarks_output_and_meets_every_criterion():
    block = re.search(r"<!-- zoo-landscape:start -->\n(.*?)<!-- zoo-landscape:end -->", BENCHMARKS, re.S)
    assert block, "docs/benchmarks.md lost its zoo-landscape markers"
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


def test_optimizers_block_is_the_benchmarks_output_with_every_problem_paired_and_the_targets_verdicts():
    block = re.search(r"<!-- optimizers:start -->\n(.*?)<!-- optimizers:end -->", BENCHMARKS, re.S)
    assert block, "docs/benchmarks.md lost its optimizers markers"
    measured = (REPO / "benchmarks" / "results" / "optimizers.md").read_text()
    assert block.group(1).rstrip("\n") == measured.rstrip("\n"), "run: python hack/update_readme.py"
    for problem in ("smooth", "rugged", "interacting", "smooth+noise"):
        heading = re.search(rf"\*\*{re.escape(problem)}\*\* — d = \d+, (\d+) paired seeds", measured)
        assert heading and int(heading.group(1)) >= 30, f"{problem}: the protocol pairs at least 30 seeds"
        results = _table_after(measured, heading.group(0))
        evogm = next(r for r in results[1:] if r[0] == "evogm")
        # EvoGM reaches random search's best of 10× its budget with at most a tenth of random's evaluations
        cell = re.fullmatch(r"([\d.]+) \(([\d.]+) %\); (\d+)/(\d+)", evogm[-1])
        assert cell and float(cell.group(2)) <= 10 and cell.group(3) == cell.group(4), (problem, evogm)
        paired = _table_after(measured, heading.group(0) + measured.split(heading.group(0), 1)[1].split("| default EvoGM vs", 1)[0])
        assert {row[0].split(" ")[0] for row in paired[1:]} >= {"cmaes*", "ga", "random"}, problem
    # both targets are reported with a verdict for every problem, whichever it is (measured, not asserted)
    verdicts = re.findall(r"^- (\S+), vs (cmaes\*|ga): (✅|❌) \d+ wins / \d+ losses, Δ [-+][\d.]+, p = \S+$", measured, re.M)
    assert len(verdicts) == 8


def test_readme_optimizer_summary_is_the_benchmarks_verdicts_against_cma_es_and_the_ga():
    block = re.search(r"<!-- optimizers-summary:start -->\n(.*?)<!-- optimizers-summary:end -->", README, re.S)
    assert block, "README.md lost its optimizers-summary markers"
    measured = (REPO / "benchmarks" / "results" / "optimizers_summary.md").read_text()
    assert block.group(1).rstrip("\n") == measured.rstrip("\n"), "run: python hack/update_readme.py"
    rows = [line for line in measured.splitlines()[2:] if line.startswith("| ")]
    # every budget's verdicts against both peers, on every problem (wins, ties and losses as they came out)
    assert {row.split(" | ")[0].strip("| ") for row in rows} == {"CMA-ES at its best σ0", "the GA", "CMA-ES at EvoGM's σ0"}
    cells = [cell for row in rows for cell in row.strip("|").split(" | ")[3:]]
    verdict = r"\s*((\*\*win\*\*|\*\*loss\*\*|tie) \d+/\d+/\d+, p = \S+|—)\s*"  # —: no seed reached that budget there
    assert cells and all(re.fullmatch(verdict, c) for c in cells), cells
    first = [row for row in rows if row.split(" | ")[1].strip() == "160"]
    assert len(first) == 3 and all("—" not in row for row in first)  # the first budget on every problem


def test_served_eval_block_is_the_benchmarks_output_with_every_engine_and_the_targets_verdicts():
    block = re.search(r"<!-- served-eval:start -->\n(.*?)<!-- served-eval:end -->", BENCHMARKS, re.S)
    assert block, "docs/benchmarks.md lost its served-eval markers"
    measured = (REPO / "benchmarks" / "results" / "served_eval.md").read_text()
    assert block.group(1).rstrip("\n") == measured.rstrip("\n"), "run: python hack/update_readme.py"
    engines = [line.split("|")[1].strip() for line in measured.splitlines() if line.startswith("| (")]
    assert engines == ["(a) in-process transformers", "(b) cold vLLM start per candidate",
                       "(c) one vLLM server, in-place swaps"]
    # Both targets are reported with a verdict, whichever it is (the numbers are measured, not asserted).
    assert re.search(r"target ≥ 3×: (met|MISSED)\); not scoring [\d.]+% of a candidate \(target < 5%: (met|MISSED)\)", measured)


def test_the_cluster_quick_start_builds_pushes_and_installs_the_images_the_build_script_tags():
    from tests.support.quick_start import QuickStart

    quick = QuickStart.from_readme(README)
    (build,) = [c for c in quick.commands if "make" in c]
    assert build == ("EVOMERGE_BASE=official", "make", "images")
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^images:\n\tbash hack/images/build\.sh operator worker$", makefile, re.M)
    assert "EVOMERGE_BASE" in (REPO / "hack" / "images" / "build.sh").read_text()
    built = subprocess.run(["bash", str(REPO / "hack" / "images" / "build.sh"), "--print", "operator", "worker"],
                           capture_output=True, text=True, check=True).stdout.split()
    pushes = quick.starting("podman", "push")
    assert [p[2] for p in pushes] == built  # what make images tagged is what is pushed
    tag = built[0].rsplit(":", 1)[1]
    overrides = quick.overrides
    assert [p[3] for p in pushes] == [f'{overrides["image.repository"]}:{tag}', f'{overrides["workerImage.repository"]}:{tag}']
    assert set(overrides) == {"image.repository", "workerImage.repository"}  # the tag stays the chart's appVersion
    assert quick.example.exists() and quick.helm_install[2] == "charts/evomerge"


def test_refine_block_is_the_benchmarks_output_over_ten_paired_seeds_of_each_optimizer():
    block = re.search(r"<!-- refine:start -->\n(.*?)<!-- refine:end -->", BENCHMARKS, re.S)
    assert block, "docs/benchmarks.md lost its refine markers"
    measured = (REPO / "benchmarks" / "results" / "refine.md").read_text()
    assert block.group(1).rstrip("\n") == measured.rstrip("\n"), "run: python hack/update_readme.py"
    assert int(re.search(r"\((\d+) paired seeds\)", measured).group(1)) >= 10  # type: ignore[union-attr]
    rows = _table_after(measured, "(negative: the refinement helped).")
    pairs = {(r[0], r[1]) for r in rows[1:]}
    assert pairs >= {(p, o) for p in ("smooth", "rugged", "interacting") for o in ("ga", "cmaes")}


def test_the_server_images_and_builds_the_docs_name_are_the_engine_catalogues_pins():
    """The README, the chart's README and values.yaml name engine images and the CPU build in prose and examples;
    an engine's pin lives in its catalogue entry only, so a bump that leaves a stale version in the docs fails."""
    from evomerge.catalogue.engines import ENGINES

    docs = {path: (REPO / path).read_text() for path in ("README.md", "charts/evomerge/README.md",
                                                          "charts/evomerge/values.yaml")}
    checked = 0
    for entry in ENGINES.values():
        patterns = []
        if entry.image is not None:
            basename = entry.image.repository.rsplit("/", 1)[1]
            patterns += [(rf"\b{re.escape(basename)}:(v?\d+(?:\.\d+)+)\b", entry.image.tag),
                         (rf"/{entry.name}:(v?\d+(?:\.\d+)+)\b", entry.image.tag),  # a mirror in an override example
                         (rf"\b{entry.name} (v?\d+(?:\.\d+)+)\b", entry.image.tag)]  # "vLLM v0.33.0" in prose
        if entry.cpu_build is not None:
            patterns.append((rf"\b{re.escape(entry.cpu_build.package)}`? (\d+(?:\.\d+)+)\b", entry.cpu_build.version))
        for path, text in docs.items():
            for pattern, pin in patterns:
                for found in re.finditer(pattern, text, re.I):
                    assert found.group(1) == pin, f"{path} names {found.group(0)!r}; the catalogue pins {pin}"
                    checked += 1
    assert checked >= 6, "the docs no longer name the engines' pins where this test looks for them"


def test_smollm2_landscape_and_targets_blocks_are_the_benchmarks_output_over_three_evogm_seeds():
    for page, name, result in ((BENCHMARKS, "smollm2-landscape", "smollm2_landscape.md"),
                               (README, "smollm2-targets", "smollm2_targets.md")):
        block = re.search(rf"<!-- {name}:start -->\n(.*?)<!-- {name}:end -->", page, re.S)
        assert block, f"lost the {name} markers"
        measured = (REPO / "benchmarks" / "results" / result).read_text()
        assert block.group(1).rstrip("\n") == measured.rstrip("\n"), "run: python hack/update_readme.py"
    targets = _table_after(measured, "### SmolLM2 world")
    assert [row[0] for row in targets[1:]] == ["0", "1", "2"]  # the targets are checked on three EvoGM seeds
    assert all(row[-1] in ("yes", "no") for row in targets[1:])  # each seed's verdict, as it came out
