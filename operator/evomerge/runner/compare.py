"""Side-by-side scores of reference merges — each expert alone, the uniform merge — and the evolved one."""

from __future__ import annotations

from dataclasses import dataclass

from ..merge.recipe import ExpertWeights, MergeRecipe

EVOLVED = "evolved merge"  # the row of the searched merge beside the references


@dataclass(frozen=True)
class Comparison:
    name: str
    search: dict[str, float]
    held_out: dict[str, float]


def reference_recipes(template: MergeRecipe) -> dict[str, MergeRecipe]:
    """Recipes that reproduce each expert alone and the uniform (1/N, untuned) merge of the template's inputs.

    Task arithmetic with a one-hot weight is the expert itself (base + (θ − base)); without a base model,
    a linear merge plays the same role.
    """
    names = [e.name for e in template.experts]
    method = "task_arithmetic" if template.base_uri else "linear"

    def with_weights(weights: dict[str, float]) -> MergeRecipe:
        experts = tuple(ExpertWeights(e.name, e.uri, {"weight": {"all": weights[e.name]}}) for e in template.experts)
        return MergeRecipe(method, template.base_uri, experts, ("all",), {"normalize": False})

    recipes = {f"expert {n}": with_weights({m: float(m == n) for m in names}) for n in names}
    recipes["uniform merge"] = with_weights({m: 1.0 / len(names) for m in names})
    return recipes


def compare_recipes(search, recipes: dict[str, MergeRecipe]) -> list[Comparison]:
    """Score each recipe on the search objectives and on the held-out ones with one resident engine each."""
    from .local import make_engine

    on_search = make_engine(search.spec, search.spec.objectives)
    search_scores = {name: on_search.score(recipe) for name, recipe in recipes.items()}
    del on_search
    if not search.spec.held_out:
        return [Comparison(name, search_scores[name], {}) for name in recipes]
    on_held_out = make_engine(search.spec, search.spec.held_out)
    return [Comparison(name, search_scores[name], on_held_out.score(recipe)) for name, recipe in recipes.items()]
