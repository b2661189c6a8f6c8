"""Fixtures for merge tests: tiny model families in float32 and bfloat16, and mergekit run in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file

from evomerge.merge.export import export_merge
from evomerge.merge.mergekit_config import to_mergekit_config
from evomerge.merge.recipe import MergeRecipe
from evomerge.models.checkpoint import open_checkpoint
from tests.support.tiny_models import build_family, build_finetune_family

LAYERS = 4
N_EXPERTS = 3


@pytest.fixture(scope="session")
def family32(tmp_path_factory) -> dict[str, Path]:
    return build_family(tmp_path_factory.mktemp("fam32"), n_experts=N_EXPERTS, layers=LAYERS, seed=3)


@pytest.fixture(scope="session")
def family16(tmp_path_factory) -> dict[str, Path]:
    return build_family(tmp_path_factory.mktemp("fam16"), n_experts=N_EXPERTS, layers=LAYERS, seed=4, dtype=torch.bfloat16)


@pytest.fixture(scope="session")
def finetunes16(tmp_path_factory) -> dict[str, Path]:
    """bf16 experts shaped like fine-tunes of the base (task vectors tie in large groups), tied embeddings."""
    return build_finetune_family(tmp_path_factory.mktemp("finetunes16"), n_experts=N_EXPERTS, layers=LAYERS, seed=5)


def load_dir(out: Path) -> dict[str, torch.Tensor]:
    """Every tensor of an exported checkpoint directory (single file or sharded)."""
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(out.glob("*.safetensors")):
        tensors.update(load_file(str(file)))
    return tensors


def export_family(recipe: MergeRecipe, family: dict[str, Path], out: Path, **kwargs) -> dict[str, torch.Tensor]:
    base = open_checkpoint(family["base"])
    experts = {name: open_checkpoint(path) for name, path in family.items() if name != "base"}
    export_merge(recipe, base, experts, out, **kwargs)
    return load_dir(out)


@pytest.fixture(scope="session")
def run_mergekit() -> Callable[..., dict[str, torch.Tensor]]:
    """mergekit 0.1.5's own merge of a recipe (through to_mergekit_config), run in this process."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    def run(recipe: MergeRecipe | dict, out: Path, seed: int | None = None, num_layers: int = LAYERS, **options) -> dict[str, torch.Tensor]:
        config = to_mergekit_config(recipe, num_layers) if isinstance(recipe, MergeRecipe) else recipe
        run_merge(MergeConfiguration.model_validate(config), str(out), MergeOptions(random_seed=seed, quiet=True, **options))
        return load_dir(out)

    return run


def differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Names whose tensors differ in value, dtype or presence (empty means bit-identical values)."""
    names = sorted(set(a) | set(b))
    return [n for n in names if n not in a or n not in b or a[n].dtype != b[n].dtype or not torch.equal(a[n], b[n])]
