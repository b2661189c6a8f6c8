"""What a search needs before its first candidate, the same for `evomerge run` and the cluster's controller.

Both resolve the spec's models where they run (a path, file://, or pvc:// under the claims the controller Job
mounts), refuse inputs that cannot merge before any evaluation runs, read the layer depth, build the genome
and encode spec.search.seeds. A data-flow path reads no base, so its models are checked for what a path
needs instead: one hidden size (a hop feeds the next).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..merge.inputs import open_source
from ..models.checkpoint import Checkpoint, CheckpointError, TensorSource, check_compatible, open_checkpoint
from ..models.uris import UriError, local_path
from ..search.genome import Genome, genome_for
from ..spec.merge_search import MODEL_A, MergeSearchSpec, path_models
from .seed_recipes import seed_recipe_vectors


@dataclass(frozen=True)
class PreparedSearch:
    """The opened inputs (a data-flow path's model A among the experts, under its path name), the model depth,
    the genome and spec.search.seeds — seed recipes, not the integer search.seed — as genome vectors (None
    without any)."""

    base: Checkpoint | None
    experts: dict[str, TensorSource]
    num_layers: int
    genome: Genome
    seed_recipes: np.ndarray | None


def prepare(spec: MergeSearchSpec) -> PreparedSearch:
    """Open and check the spec's models and build what the optimizer starts from; errors name the field."""
    base_dir = resolve("spec.baseModel.uri", spec.base_model.uri) if spec.base_model else None
    base = open_checkpoint(base_dir, spec.allow_pickle) if base_dir else None
    experts = {e.name: open_source(resolve(f"spec.experts[{i}].uri", e.uri), base, spec.allow_pickle)  # LoRA: over the base
               for i, e in enumerate(spec.experts)}
    model_a = model_a_dir(spec)
    if model_a is not None:
        experts[MODEL_A] = open_checkpoint(model_a, spec.allow_pickle)  # a path model, exported with the rest
    path_layers = None
    if spec.merge.data_flow.enabled:
        path_layers = _path_layers(spec, experts)
        num_layers = path_layers[path_models(spec)[0][0]]  # model A's
    else:
        if base is not None:
            check_compatible(base, experts, spec.merge.dtype)
        num_layers = _layers(base if base is not None else next(iter(experts.values())))
    genome = genome_for(spec, num_layers, path_layers)
    return PreparedSearch(base, experts, num_layers, genome, seed_recipe_vectors(spec, genome, num_layers))


def resolve(field: str, uri: str) -> Path:
    """The local directory of a model URI, an error naming the spec field that holds it."""
    try:
        return local_path(uri)
    except UriError as exc:
        raise UriError(f"{field}: {exc}") from None


def model_a_dir(spec: MergeSearchSpec) -> Path | None:
    flow = spec.merge.data_flow
    if not flow.enabled or flow.model_a is None:
        return None
    return resolve("spec.merge.dataFlow.modelA.uri", flow.model_a.uri)


def _layers(source: TensorSource) -> int:
    layers = source.config().get("num_hidden_layers")
    if not isinstance(layers, int) or layers < 1:
        raise CheckpointError(f"{getattr(source, 'root', 'the reference model')}: config.json has no num_hidden_layers "
                              "— layer groups need the model depth")
    return layers


def _path_layers(spec: MergeSearchSpec, checkpoints: dict[str, TensorSource]) -> dict[str, int]:
    """Each path model's depth, after checking that all of them share model A's hidden size (a hop feeds the next)."""
    models = [name for name, _ in path_models(spec)]
    configs = {name: checkpoints[name].config() for name in models}
    width_a = configs[models[0]].get("hidden_size")
    for name in models[1:]:
        if configs[name].get("hidden_size") != width_a:
            raise CheckpointError(
                f"spec.merge.dataFlow: path model {name!r} has hidden_size {configs[name].get('hidden_size')}, model A "
                f"({models[0]!r}) has {width_a} — the layers of one path must share the hidden size"
            )
    return {name: _layers(checkpoints[name]) for name in models}
