"""The expert zoo: a tiny Llama base model, skill experts, a distractor, LoRA adapters and lm-eval
tasks, trained deterministically on CPU and cached. It is the demo, the quality benchmark and the
integration fixture of evomerge. Beside it, the SmolLM2 world (``smollm2/``): a real pretrained base and
experts fine-tuned from it (``worlds.build_world`` picks either by name)."""

from .build import Zoo, build_zoo
from .recipe import CODE_VERSION, RECIPES, ZooRecipe, recipe_for
from .worlds import WORLDS, build_world

__all__ = ["CODE_VERSION", "RECIPES", "WORLDS", "Zoo", "ZooRecipe", "build_world", "build_zoo", "recipe_for"]
