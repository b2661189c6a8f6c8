"""Side-by-side scores of reference merges — each expert alone, the uniform merge — and the evolved one,
with the paired test of the evolved merge against each reference on the held-out items."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from ..catalogue.methods import reference_method
from ..evaluate.items import ItemScores, compare_items
from ..merge.recipe import ExpertWeights, MergeRecipe
from ..report.run_data import ComparisonRow

EVOLVED = "evolved merge"  # the row of the searched merge beside the references


@dataclass(frozen=True)
class Comparison(ComparisonRow):
    """A row of the comparison with its held-out per-item results, which the paired tests read and the run keeps."""

    items: ItemScores = field(default_factory=dict)


def reference_recipes(template: MergeRecipe) -> dict[str, MergeRecipe]:
    """Recipes that reproduce each expert alone and the uniform (1/N, untuned) merge of the template's inputs.

    A plain weighted sum with a one-hot weight is the expert itself (task arithmetic: base + (θ − base)); the
    catalogue's reference method has one for merges with a base and one for those without.
    """
    names = [e.name for e in template.experts]
    method = reference_method(with_base=bool(template.base_uri)).name

    def with_weights(weights: dict[str, float]) -> MergeRecipe:
        experts = tuple(ExpertWeights(e.name, e.uri, {"weight": {"all": weights[e.name]}}) for e in template.experts)
        return MergeRecipe(method, template.base_uri, experts, ("all",), {"normalize": False})

    recipes = {f"expert {n}": with_weights({m: float(m == n) for m in names}) for n in names}
    recipes["uniform merge"] = with_weights({m: 1.0 / len(names) for m in names})
    return recipes


def compare_recipes(search, recipes: dict[str, MergeRecipe], worker=None,
                    progress: Callable[[str], None] | None = None) -> list[Comparison]:
    """Score each recipe on the search objectives and on the held-out ones with one resident engine each; with
    an EVOLVED recipe among them, test it against each other one on the held-out items (paired, as the
    cluster's promotion gate does: evaluate/items.py). Engine vllm scores through `worker`'s server.

    Each scoring is a whole evaluation (on a real base, tens of seconds), so `progress` hears of each one as it ends:
    a comparison of six rows on both splits would otherwise sit silent for minutes after the search."""
    from .local import make_engine

    spec = search.spec
    total, done = len(recipes) * (2 if spec.held_out else 1), 0

    def score_each(objectives, split: str, score: Callable) -> dict:
        """Every recipe on one split, with one engine, which is freed before the next split's is made."""
        nonlocal done
        engine, scores = make_engine(spec, objectives, worker=worker), {}
        for name, recipe in recipes.items():
            started = time.monotonic()
            scores[name] = score(engine, recipe)
            done += 1
            if progress:
                progress(f"comparison: scored {name} on the {split} objectives ({done}/{total}, "
                         f"{time.monotonic() - started:.0f} s)")
        return scores

    search_scores = score_each(spec.objectives, "search", lambda engine, recipe: engine.score(recipe))
    if not spec.held_out:
        return [Comparison(name, search_scores[name], {}) for name in recipes]
    held_out = score_each(spec.held_out, "held-out", lambda engine, recipe: engine.score_items(recipe))
    evolved = held_out[EVOLVED][1] if EVOLVED in held_out else None
    return [
        Comparison(name, search_scores[name], scores,
                   compare_items(spec.held_out, items, evolved, seed=spec.search.seed) if evolved and name != EVOLVED else None,
                   items)
        for name, (scores, items) in held_out.items()
    ]
