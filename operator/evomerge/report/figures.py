"""The report's plots, drawn with matplotlib's object API (no pyplot state, safe in any thread or server).

Each function returns a Figure, or None when the run has nothing to draw for it; `png` renders one.
"""

from __future__ import annotations

import io
import math
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure

from ..catalogue.methods import DEFAULT_BOUNDS
from ..spec.merge_search import Objective
from .run_data import RunData

BEST, MEAN, SO_FAR, HELD_OUT, OTHERS, REFINE = "#1f6feb", "#8c959f", "#2da44e", "#cf222e", "#d0d7de", "#bf8700"
MODEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def png(figure: Figure, dpi: int = 110) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def progress_figure(run: RunData) -> Figure | None:
    """Best, mean and best-so-far fitness per generation, then each objective's best and mean raw metric."""
    if not run.generations:
        return None
    objectives = run.spec.objectives if len(run.spec.objectives) > 1 else []
    panels = 1 + len(objectives)
    columns = 1 if panels == 1 else 2
    rows = math.ceil(panels / columns)
    figure = Figure(figsize=(6.4 * columns, 3.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    _fitness_panel(axes[0], run)
    for ax, objective in zip(axes[1:], objectives):
        _objective_panel(ax, run, objective)
    for ax in axes[panels:]:
        ax.set_visible(False)
    return figure


def _fitness_panel(ax, run: RunData) -> None:
    gens = [s.generation for s in run.generations]
    best = [s.best for s in run.generations]
    mean = [s.mean for s in run.generations]
    searched = [c for c in run.scored if not c.refine]
    ax.scatter([c.generation for c in searched], [c.fitness for c in searched], s=10, color=OTHERS,
               label="candidates", zorder=1)
    refined = [c for c in run.scored if c.refine]  # search.refine's steps: their own column after the search proper
    if refined:
        ax.scatter([c.generation for c in refined], [c.fitness for c in refined], s=14, marker="x", color=REFINE,
                   label="local refinement", zorder=1)
    ax.plot(gens, _nan(best), marker="o", color=BEST, label="best of generation", zorder=3)
    ax.plot(gens, _nan(mean), marker=".", color=MEAN, label="mean of generation", zorder=2)
    ax.step(gens, _running_max(best), where="post", linestyle="--", color=SO_FAR, label="best so far", zorder=2)
    held = run.held_out_fitness
    if held is not None:
        ax.scatter([gens[-1]], [held], marker="*", s=220, color=HELD_OUT, zorder=4, label="held-out, final merge")
    _round_lines(ax, run)
    single = run.spec.objectives[0].key if len(run.spec.objectives) == 1 else None
    ax.set_title("fitness on the search split" + (f" ({single})" if single else ""))
    _finish(ax, "generation", "fitness")


def _objective_panel(ax, run: RunData, objective: Objective) -> None:
    series = run.per_objective(objective)
    if series:
        gens, best, mean = zip(*series)
        ax.plot(gens, best, marker="o", color=BEST, label="best of generation")
        ax.plot(gens, mean, marker=".", color=MEAN, label="mean of generation")
    held = run.held_out.get(objective.key)
    if held is not None and run.generations:
        ax.scatter([run.generations[-1].generation], [held], marker="*", s=220, color=HELD_OUT, zorder=4,
                   label="held-out, final merge")
    _round_lines(ax, run)
    arrow = "↑" if objective.direction == "maximize" else "↓"
    ax.set_title(f"{objective.key} {arrow}")
    _finish(ax, "generation", objective.metric)


def pareto_figure(run: RunData) -> Figure | None:
    """Every scored candidate over each pair of objectives (raw metrics), the non-dominated set joined up."""
    objectives = run.spec.objectives
    if len(objectives) < 2 or not run.scored:
        return None
    pairs = [(objectives[i], objectives[j]) for i in range(len(objectives)) for j in range(i + 1, len(objectives))][:3]
    figure = Figure(figsize=(5.2 * len(pairs), 4.4), layout="constrained")
    axes = figure.subplots(1, len(pairs), squeeze=False).ravel()
    front = run.pareto_front()
    best = run.best
    for ax, (x, y) in zip(axes, pairs):
        ax.scatter([c.scores[x.key] for c in run.scored], [c.scores[y.key] for c in run.scored], s=14, color=OTHERS,
                   label="candidates")
        points = sorted((c.scores[x.key], c.scores[y.key]) for c in front)  # type: ignore[index]
        # With two objectives the front is a curve; projected from more, its points need not be ordered.
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=BEST, label="Pareto front",
                linestyle="-" if len(objectives) == 2 else "none")
        if best is not None and best.scores:
            ax.scatter([best.scores[x.key]], [best.scores[y.key]], marker="*", s=220, color=HELD_OUT, zorder=4,
                       label=f"best fitness ({best.id})")
        ax.set_title(f"{x.key} vs {y.key}")
        _finish(ax, x.key, y.key)
    return figure


def coefficients_figure(recipe: dict[str, Any], bounds: dict[str, tuple[float, float]] | None = None) -> Figure | None:
    """One heatmap per evolved parameter: experts × layer groups of the best recipe."""
    experts = recipe.get("experts") or []
    genes = list(dict.fromkeys(g for e in experts for g in e.get("params", {})))
    if not genes:
        return None
    groups = list(recipe.get("groups") or ["all"])
    width = max(4.0, 0.9 * len(groups) + 2.5)
    figure = Figure(figsize=(width, (0.55 * len(experts) + 1.4) * len(genes)), layout="constrained")
    axes = figure.subplots(len(genes), 1, squeeze=False).ravel()
    for ax, gene in zip(axes, genes):
        grid = [[_value(e, gene, g) for g in groups] for e in experts]
        finite = [v for row in grid for v in row if not math.isnan(v)]
        low, high = (bounds or DEFAULT_BOUNDS).get(gene, (min(finite), max(finite)))
        image = ax.imshow(grid, cmap="viridis", aspect="auto", norm=Normalize(low, high))
        ax.set_xticks(range(len(groups)), groups, rotation=45 if len(groups) > 6 else 0, ha="right" if len(groups) > 6 else "center")
        ax.set_yticks(range(len(experts)), [e["name"] for e in experts])
        if len(groups) * len(experts) <= 120:
            for i, row in enumerate(grid):
                for j, value in enumerate(row):
                    if not math.isnan(value):
                        shade = (value - low) / (high - low) if high > low else 0.5
                        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                                color="black" if shade > 0.6 else "white")
        ax.set_title(f"{gene} per expert and layer group")
        figure.colorbar(image, ax=ax, label=gene, shrink=0.9)
    return figure


def layer_path_figure(layer_path: dict[str, Any]) -> Figure | None:
    """A data-flow path: hop → (model, layer), coloured by the hop's input scale."""
    hops = layer_path.get("hops") or []
    if not hops:
        return None
    models = list(layer_path.get("models") or dict.fromkeys(h[0] for h in hops))
    scales = [float(h[2]) for h in hops]
    figure = Figure(figsize=(min(16.0, max(6.0, 0.12 * len(hops) + 4)), 4.2), layout="constrained")
    ax = figure.subplots()
    ax.plot(range(len(hops)), [int(h[1]) for h in hops], color=OTHERS, linewidth=1, zorder=1)
    low, high = min(scales), max(scales)
    norm = TwoSlopeNorm(1.0, min(low, 0.999), max(high, 1.001))
    image = None
    for k, model in enumerate(models):
        idx = [i for i, h in enumerate(hops) if h[0] == model]
        if not idx:
            continue
        image = ax.scatter(idx, [int(hops[i][1]) for i in idx], c=[scales[i] for i in idx], cmap="coolwarm", norm=norm,
                           marker=MODEL_MARKERS[k % len(MODEL_MARKERS)], s=46, edgecolors="black", linewidths=0.4,
                           label=model, zorder=2)
    if image is not None:
        figure.colorbar(image, ax=ax, label="input scale of the hop")
    ax.set_title(f"evolved layer path: {len(hops)} hops (marker = source model, colour = scale)")
    _finish(ax, "hop", "layer of the source model")
    ax.yaxis.get_major_locator().set_params(integer=True)
    return figure


def _value(expert: dict[str, Any], gene: str, group: str) -> float:
    values = expert.get("params", {}).get(gene, {})
    value = values.get(group, values.get("all"))
    return float("nan") if value is None else float(value)


def _nan(values: list[float | None]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def _running_max(values: list[float | None]) -> list[float]:
    out: list[float] = []
    best = float("nan")
    for v in values:
        if v is not None and (math.isnan(best) or v > best):
            best = float(v)
        out.append(best)
    return out


def _round_lines(ax, run: RunData) -> None:
    for round_, generation in run.round_starts():
        ax.axvline(generation - 0.5, color="#57606a", linestyle=":", linewidth=1)
        ax.annotate(f"round {round_}", (generation - 0.5, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                    textcoords="offset points", fontsize=8, color="#57606a")


def _finish(ax, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, loc="best")
