"""The run report: one self-contained HTML page (plots as base64 PNG) and a markdown summary beside its PNGs."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..catalogue.contracts import REPORT_DIR, REPORT_PAGE
from ..evaluate.scoring import fitness
from ..spec.base import format_number
from .figures import coefficients_figure, layer_path_figure, pareto_figure, png, progress_figure
from .model_card import budget_text
from .run_data import RunData, load_run

TOP_CANDIDATES = 10
SHOWN_FAILURES = 5


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    emphasis: frozenset[int] = frozenset()  # row indices drawn in bold (the evolved merge, the best candidate)


@dataclass(frozen=True)
class Section:
    title: str
    text: str = ""
    image: bytes | None = None
    image_name: str = ""
    image_alt: str = ""
    table: Table | None = None
    code: str = ""  # preformatted text (the recipe as JSON)


@dataclass(frozen=True)
class Report:
    title: str
    facts: Table
    sections: tuple[Section, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    images: tuple[Path, ...]


def build_report(run: RunData) -> Report:
    """Everything the report shows, as data; HTML and markdown are two renderings of it."""
    sections = [_scores_section(run)]
    progress = progress_figure(run)
    sections.append(Section(
        "Search progress",
        "Fitness of every candidate per generation (search split), with each generation's best and mean and the best so far; "
        "the star is the final merge's held-out score." if progress else "No generation has finished yet.",
        png(progress) if progress else None, "progress.png", "fitness and objective scores per generation",
    ))
    pareto = pareto_figure(run)
    if pareto is not None:
        front = run.pareto_front()
        sections.append(Section(
            "Pareto front", f"{len(front)} non-dominated candidates of {len(run.scored)} scored.",
            png(pareto), "pareto.png", "objective pairs of every candidate and the Pareto front",
        ))
    recipe = run.best_recipe
    if recipe is not None:
        heatmap = coefficients_figure(recipe, run.spec.merge.bounds.by_gene())
        if heatmap is not None:
            sections.append(Section(
                "Evolved coefficients",
                f"The best recipe ({recipe.get('method')}): each expert's parameters per layer group, "
                "coloured over the search bounds.",
                png(heatmap), "coefficients.png", "heatmap of the evolved parameters per expert and layer group",
            ))
        path = recipe.get("layerPath")
        if path:
            figure = layer_path_figure(path)
            if figure is not None:
                sections.append(Section(
                    "Layer path", f"Data-flow path over models {', '.join(path.get('models', []))}.",
                    png(figure), "layer_path.png", "the evolved layer path, hop by hop",
                ))
    refinement = _refinement_section(run)
    if refinement is not None:
        sections.append(refinement)
    if run.comparison:
        sections.append(Section(
            "Experts, uniform merge and evolved merge",
            "Each reference scored on the search and held-out splits; fitness is the objectives' weighted mean.",
            table=_comparison_table(run),
        ))
    if run.scored:
        sections.append(Section("Top candidates", table=_top_table(run)))
    if run.failed:
        sections.append(Section("Failed evaluations", table=_failure_table(run)))
    if recipe is not None:
        sections.append(Section("Best recipe", code=json.dumps(recipe, indent=2)))
    return Report(f"evomerge report: {run.name}", _facts(run), tuple(sections))


def write_report(run: RunData | Path, out_dir: Path | None = None) -> ReportFiles:
    """Render a run (or a run directory) into out_dir (default: <run dir>/report)."""
    if not isinstance(run, RunData):
        out_dir = out_dir or Path(run) / REPORT_DIR
        run = load_run(Path(run))
    if out_dir is None:
        raise ValueError("write_report: out_dir is required when the run is given as data")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = build_report(run)
    images = []
    for section in report.sections:
        if section.image is not None:
            path = out_dir / section.image_name
            path.write_bytes(section.image)
            images.append(path)
    html_path = out_dir / REPORT_PAGE
    html_path.write_text(render_html(report))
    md_path = out_dir / "report.md"
    md_path.write_text(render_markdown(report))
    return ReportFiles(html_path, md_path, tuple(images))


# ---- content ------------------------------------------------------------------------------------------
def _facts(run: RunData) -> Table:
    spec, summary = run.spec, run.summary
    s = spec.search
    merge = spec.merge
    grouping = merge.granularity + (f" ({merge.layer_groups})" if merge.granularity == "layerGroups" else "")
    rows = [
        ("merge", f"{merge.method}, {grouping}{', attention/MLP split' if merge.split_modules else ''}; evolves {', '.join(merge.evolve)}"),
        ("base model", spec.base_model.uri if spec.base_model else "—"),
        ("experts", ", ".join(e.name for e in spec.experts) or "—"),
        ("optimizer", f"{s.algorithm} ({s.mode}), seed {s.seed}"),
        ("budget", budget_text(s)),
        ("evaluations", f"{len([c for c in run.candidates if c.scores is not None or c.error])} "
                        f"({len(run.failed)} failed, {sum(c.cached for c in run.candidates)} from cache)"),
        ("generations", str(len(run.generations))),
        ("status", summary.get("stopReason") or "running or interrupted (no summary.json yet)"),
    ]
    best = run.best
    if best is not None:
        rows.append(("best candidate", f"{best.id} (round {best.round}, generation {best.generation}), fitness {_num(best.fitness)}"))
    if run.held_out_fitness is not None:
        rows.append(("held-out fitness", _num(run.held_out_fitness)))
    if summary.get("mergedModel"):
        rows.append(("merged model", str(summary["mergedModel"])))
    return Table(("", ""), tuple(rows))


def _refinement_section(run: RunData) -> Section | None:
    refinement = run.refinement
    if refinement is None:
        return None
    start, best = refinement.start, refinement.best
    outcome = (f"it found {best.id} at {_num(best.fitness)} (+{_num(refinement.gain)})" if best is not start
               else "none of its steps improved on it")
    return Section("Local refinement", f"{refinement.evaluations} evaluations of small steps around the search's best, "
                   f"{start.id} at fitness {_num(start.fitness)}: {outcome}.")


def _scores_section(run: RunData) -> Section:
    best = run.best
    rows = []
    for o in run.spec.objectives:
        value = best.scores.get(o.key) if best and best.scores else None
        rows.append(("search", o.task, o.metric, str(o.limit or "all"), _num(value)))
    for o in run.spec.held_out:
        rows.append(("held-out", o.task, o.metric, str(o.limit or "all"), _num(run.held_out.get(o.key))))
    text = "Scores of the best merge." if best else "No candidate has been scored yet."
    return Section("Best merge", text, table=Table(("split", "task", "metric", "limit", "score"), tuple(rows)))


def _comparison_table(run: RunData) -> Table:
    objectives, held = run.spec.objectives, run.spec.held_out
    tested = any(r.evolved_test is not None for r in run.comparison)
    headers = ("model", "search fitness", "held-out fitness",
               *(f"search {o.key}" for o in objectives), *(f"held-out {o.key}" for o in held),
               *(("evolved vs this, held-out",) if tested else ()))
    rows = []
    emphasis = set()
    for i, r in enumerate(run.comparison):
        search_fit = _safe_fitness(objectives, r.search)
        held_fit = _safe_fitness(held, r.held_out) if held else None
        rows.append((r.name, _num(search_fit), _num(held_fit),
                     *(_num(r.search.get(o.key)) for o in objectives), *(_num(r.held_out.get(o.key)) for o in held),
                     *((r.evolved_test.brief() if r.evolved_test is not None else "—",) if tested else ())))
        if "evolved" in r.name:
            emphasis.add(i)
    return Table(headers, tuple(rows), frozenset(emphasis))


def _top_table(run: RunData) -> Table:
    keys = [o.key for o in run.spec.objectives]
    top = sorted(run.scored, key=lambda c: -c.fitness)[:TOP_CANDIDATES]  # type: ignore[operator]
    best = run.best
    rows = tuple(
        (c.id, str(c.round), str(c.generation), _num(c.fitness), *(_num((c.scores or {}).get(k)) for k in keys))
        for c in top
    )
    emphasis = frozenset(i for i, c in enumerate(top) if best is not None and c.id == best.id)
    return Table(("candidate", "round", "generation", "fitness", *keys), rows, emphasis)


def _failure_table(run: RunData) -> Table:
    rows = tuple((c.id, str(c.generation), (c.error or "")[:300]) for c in run.failed[:SHOWN_FAILURES])
    if len(run.failed) > SHOWN_FAILURES:
        rows += ((f"… {len(run.failed) - SHOWN_FAILURES} more", "", "see history.jsonl"),)
    return Table(("candidate", "generation", "error"), rows)


def _safe_fitness(objectives: Sequence[Any], scores: dict[str, float]) -> float | None:
    if not scores or any(o.key not in scores for o in objectives):
        return None
    return fitness(objectives, scores)


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    return format_number(round(float(value), 4))


# ---- rendering ----------------------------------------------------------------------------------------
STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
table { border-collapse: collapse; margin: .6rem 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } tr.em td { font-weight: 600; background: #dafbe1; }
img { max-width: 100%; height: auto; display: block; margin: .6rem 0; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: 13px; }
"""


def render_html(report: Report) -> str:
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(report.title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
        f"<h1>{html.escape(report.title)}</h1>", _html_table(report.facts, header=False),
    ]
    for section in report.sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        if section.code:
            parts.append(f"<pre><code>{html.escape(section.code)}</code></pre>")
        if section.image is not None:
            data = base64.b64encode(section.image).decode("ascii")
            parts.append(f'<img src="data:image/png;base64,{data}" alt="{html.escape(section.image_alt)}">')
        if section.table is not None:
            parts.append(_html_table(section.table))
        parts.append("</section>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _html_table(table: Table, header: bool = True) -> str:
    rows = []
    if header:
        rows.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in table.headers) + "</tr>")
    for i, row in enumerate(table.rows):
        cls = ' class="em"' if i in table.emphasis else ""
        cells = "".join(
            (f"<th>{html.escape(c)}</th>" if not header and j == 0 else f"<td>{html.escape(c)}</td>") for j, c in enumerate(row)
        )
        rows.append(f"<tr{cls}>{cells}</tr>")
    return "<table>" + "".join(rows) + "</table>"


def render_markdown(report: Report) -> str:
    lines = [f"# {report.title}", "", _md_table(Table(("", ""), report.facts.rows)), ""]
    for section in report.sections:
        lines += [f"## {section.title}", ""]
        if section.text:
            lines += [section.text, ""]
        if section.image is not None:
            lines += [f"![{section.image_alt}]({section.image_name})", ""]
        if section.table is not None:
            lines += [_md_table(section.table), ""]
        if section.code:
            lines += ["```json", section.code, "```", ""]
    return "\n".join(lines)


def _md_table(table: Table) -> str:
    def cell(text: str, bold: bool) -> str:
        text = text.replace("|", "\\|").replace("\n", " ")
        return f"**{text}**" if bold and text else text

    lines = ["| " + " | ".join(cell(h, False) for h in table.headers) + " |",
             "|" + "|".join("---" for _ in table.headers) + "|"]
    for i, row in enumerate(table.rows):
        lines.append("| " + " | ".join(cell(c, i in table.emphasis) for c in row) + " |")
    return "\n".join(lines)
