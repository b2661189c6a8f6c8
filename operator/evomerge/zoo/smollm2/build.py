"""Build (or find in the cache) the SmolLM2 world: the converted base, LoRA and few-layer experts, and tasks."""

from __future__ import annotations

import copy
import warnings
from dataclasses import asdict
from pathlib import Path

from ..build import MANIFEST, Progress, Zoo, derive_seed, fixed_threads, save_adapter, write_manifest
from ..cache import build_atomically, zoo_dir
from ..tasks import EvaluationSets
from ..tokenizer import save_tokenizer
from .convert import load_gguf, save_converted, wheel_gguf
from .recipe import CODE_VERSION, RECIPE, WORLD, WorldRecipe
from .tasks import GENERAL, GENERAL_METRIC, draw_evaluation_sets, write_world_tasks


def build_smollm2(seed: int = 0, cache_dir: Path | None = None, progress: Progress | None = None) -> Zoo:
    """The SmolLM2 world for ``seed``, built on first use and cached under
    ``${EVOMERGE_CACHE:-~/.cache/evomerge}/zoo/smollm2-<seed>-<recipe hash>``."""
    final = zoo_dir(cache_dir, WORLD, seed, RECIPE.digest()).absolute()
    if (final / MANIFEST).is_file():
        return Zoo.load(final)
    gguf = wheel_gguf()  # before any work: a missing wheel names its install command
    say = progress or (lambda _msg: None)
    say(f"building the {WORLD} world (seed {seed}) into {final}")
    build_atomically(final, lambda tmp: _build_into(tmp, final, gguf, RECIPE, seed, say))
    return Zoo.load(final)


def _build_into(tmp: Path, final: Path, gguf: Path, recipe: WorldRecipe, seed: int, say: Progress) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with fixed_threads(recipe.threads):
        save_converted(*load_gguf(gguf), tmp / "base")
        base = AutoModelForCausalLM.from_pretrained(str(tmp / "base")).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(tmp / "base"))
        say("base converted from GGUF")
        sets = draw_evaluation_sets(recipe.everyone, recipe.search_examples, recipe.heldout_examples,
                                    derive_seed(seed, "eval"))
        search, heldout = write_world_tasks(sets, recipe.skills, tmp / "tasks", final / "tasks", seed)
        say(f"tasks written ({len(search)} search, {len(heldout)} held-out)")
        experts, adapters = {}, {}
        for name in recipe.everyone:
            adapter = _train_lora(base, name, recipe, seed, tokenizer, sets, say)
            save_adapter(adapter, tmp / "lora" / name, final / "base")
            adapters[name] = f"lora/{name}"
        for name in recipe.everyone:
            expert = _train_layers(base, name, recipe, seed, tokenizer, sets, say)
            expert.save_pretrained(str(tmp / "experts" / name), safe_serialization=True)
            save_tokenizer(tokenizer, tmp / "experts" / name)
            experts[name] = f"experts/{name}"

    write_manifest(tmp, code_version=CODE_VERSION, size=WORLD, seed=seed, digest=recipe.digest(),
                   hyper_parameters=asdict(recipe), experts=experts, adapters=adapters, skills=recipe.skills,
                   distractors=recipe.distractors, search=search, heldout=heldout,
                   checks={"checks": [GENERAL], "check_metric": GENERAL_METRIC})
    say("world complete")


def _stream(name: str, seed: int, sets: EvaluationSets, batch_size: int, purpose: str):
    from ..training import example_stream, single_skill_batches
    from .skills import SKILLS

    return example_stream(single_skill_batches(SKILLS[name].example), batch_size,
                          derive_seed(seed, f"{purpose}-{name}-data"), sets.prompts())


def _report(say: Progress, what: str, total: int):
    return lambda step, loss: say(f"{what}: step {step}/{total} loss {loss:.3f}")


def _train_lora(base, name: str, recipe: WorldRecipe, seed: int, tokenizer, sets: EvaluationSets, say: Progress):
    import torch
    from peft import LoraConfig, get_peft_model

    from ..training import train

    config = LoraConfig(r=recipe.lora_shape.rank, lora_alpha=recipe.lora_shape.alpha,
                        target_modules=list(recipe.lora_shape.target_modules),
                        layers_to_transform=list(recipe.lora_layers), lora_dropout=0.0, bias="none",
                        task_type="CAUSAL_LM")
    torch.manual_seed(derive_seed(seed, f"lora-init-{name}"))
    with warnings.catch_warnings():  # transformers' own deprecation notice, raised inside PEFT
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(copy.deepcopy(base), config)
    schedule = recipe.lora_for(name)
    stream = _stream(name, seed, sets, schedule.batch_size, "lora")
    loss = train(model, tokenizer, stream, schedule, derive_seed(seed, f"lora-{name}"),
                 progress=_report(say, f"LoRA {name}", schedule.steps))
    say(f"LoRA {name} trained (final loss {loss:.3f})")
    return model


def _train_layers(base, name: str, recipe: WorldRecipe, seed: int, tokenizer, sets: EvaluationSets,
                  say: Progress):
    """A full fine-tune of ``recipe.full_layers``: every other weight keeps the base's value exactly."""
    from ..training import train

    model = copy.deepcopy(base)
    trained = {f"model.layers.{i}." for i in recipe.full_layers}
    for key, parameter in model.named_parameters():
        parameter.requires_grad_(any(key.startswith(prefix) for prefix in trained))
    schedule = recipe.full_for(name)
    stream = _stream(name, seed, sets, schedule.batch_size, "full")
    loss = train(model, tokenizer, stream, schedule, derive_seed(seed, f"full-{name}"),
                 progress=_report(say, f"expert {name}", schedule.steps))
    say(f"expert {name} (layers {recipe.full_layers[0]}-{recipe.full_layers[-1]}) trained (final loss {loss:.3f})")
    return model
