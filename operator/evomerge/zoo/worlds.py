"""The worlds evomerge builds to test and demo on, by name: the toy zoo (trained from scratch, in sizes) and the
SmolLM2 world (a real pretrained base and experts fine-tuned from it)."""

from __future__ import annotations

from pathlib import Path

from ..catalogue.engines import DEFAULT_ENGINE, VLLM
from .build import Progress, Zoo, build_zoo
from .recipe import recipe_for

TOY, SMOLLM2 = "toy", "smollm2"
WORLDS = (TOY, SMOLLM2)
# The engine `evomerge demo` scores a world's candidates with unless --engine says otherwise: in-process for the toy
# zoo's tiny models (nothing to start); one vLLM server for SmolLM2-135M, which scores a candidate in about a third
# of the in-process time (README: The SmolLM2 world).
DEMO_ENGINES = {TOY: DEFAULT_ENGINE, SMOLLM2: VLLM.name}


def check_world(world: str, size: str | None) -> None:
    """Refuse an unknown world, or a size the world does not have, with the fix."""
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}; choose one of {', '.join(WORLDS)}")
    if world == SMOLLM2 and size is not None:
        raise ValueError("the smollm2 world has one size: leave --size out (it chooses the toy zoo's size)")
    if world == TOY and size is not None:
        recipe_for(size)


def build_world(world: str, seed: int = 0, size: str | None = None, cache_dir: Path | None = None,
                progress: Progress | None = None, default_size: str = "nano") -> Zoo:
    """The world built (or found in the cache); ``size`` picks the toy zoo's size (``default_size`` if unset)."""
    check_world(world, size)
    if world == SMOLLM2:
        from .smollm2.build import build_smollm2

        return build_smollm2(seed, cache_dir, progress)
    return build_zoo(size or default_size, seed=seed, cache_dir=cache_dir, progress=progress)  # type: ignore[arg-type]
