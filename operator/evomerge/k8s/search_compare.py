"""The report's comparison table in the cluster: each expert alone and the uniform merge beside the evolved one.

When an epoch ends, the controller scores the reference recipes of runner/compare.py in evaluation Jobs of
their own (component `comparison`, so the search's executor and the operator's metrics never count them):
the references on spec.objectives, then the references and the evolved merge on spec.heldOut. The evolved
merge's search scores are the search's own. Job names follow from the candidate ids, so a controller killed
midway adopts the Jobs already there. A reference that cannot be scored leaves its cells empty — the table
is a view of the search, never a reason to fail it.
"""

from __future__ import annotations

import logging
from typing import Any

from ..merge.recipe import MergeRecipe
from ..runner.compare import EVOLVED, reference_recipes
from ..runner.loop import Candidate
from ..spec.merge_search import MergeSearchSpec
from .client import Kube
from .evaluation_jobs import evaluation_executor
from .naming import COMPARISON
from .settings import ClusterSettings

log = logging.getLogger(__name__)


def compare_in_cluster(kube: Kube, search: dict[str, Any], epoch: int, spec: MergeSearchSpec,
                       settings: ClusterSettings, owner: dict[str, Any], evolved: Candidate) -> list[dict[str, Any]]:
    """Rows of the comparison table (report/run_data.py's comparison.json form); [] for a layer path,
    which has no uniform merge to compare with."""
    recipe = MergeRecipe.from_dict(evolved.recipe)
    if recipe.layer_path is not None:
        return []
    references = reference_recipes(recipe)
    names = list(references)
    on_search = _score(kube, search, epoch, spec, settings, owner, False,
                       {f"cmp-s{i}": references[n] for i, n in enumerate(names)})
    rows = {n: {"name": n, "search": on_search.get(f"cmp-s{i}", {}), "heldOut": {}} for i, n in enumerate(names)}
    rows[EVOLVED] = {"name": EVOLVED, "search": dict(evolved.scores or {}), "heldOut": {}}
    if spec.held_out:
        everything = {**references, EVOLVED: recipe}
        order = list(everything)
        on_held_out = _score(kube, search, epoch, spec, settings, owner, True,
                             {f"cmp-h{i}": everything[n] for i, n in enumerate(order)})
        for i, n in enumerate(order):
            rows[n]["heldOut"] = on_held_out.get(f"cmp-h{i}", {})
    return list(rows.values())


def _score(kube: Kube, search: dict[str, Any], epoch: int, spec: MergeSearchSpec, settings: ClusterSettings,
           owner: dict[str, Any], held_out: bool, recipes: dict[str, MergeRecipe]) -> dict[str, dict[str, float]]:
    executor = evaluation_executor(kube, search, epoch, spec, settings, owner, COMPARISON, held_out)
    for cid, recipe in recipes.items():
        executor.submit(cid, recipe)
    scores: dict[str, dict[str, float]] = {}
    try:
        while executor.pending:
            results = executor.wait()
            if not results:
                break
            for result in results:
                if result.scores is not None:
                    scores[result.candidate] = result.scores
                else:
                    log.warning("comparison %s (%s split) not scored: %s", result.candidate,
                                "held-out" if held_out else "search", result.error)
    finally:
        executor.close()
    return scores
