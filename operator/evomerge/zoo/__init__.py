"""The expert zoo: a tiny Llama base model, skill experts, a distractor, LoRA adapters and lm-eval
tasks, trained deterministically on CPU and cached. It is the demo, the quality benchmark and the
integration fixture of evomerge."""

from .build import Zoo, build_zoo
from .recipe import CODE_VERSION, RECIPES, ZooRecipe, recipe_for

__all__ = ["CODE_VERSION", "RECIPES", "Zoo", "ZooRecipe", "build_zoo", "recipe_for"]
