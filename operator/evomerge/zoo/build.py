"""Build (or find in the cache) a zoo: tokenizer, base model, experts, LoRA adapters and tasks."""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from .cache import build_atomically, zoo_dir
from .recipe import CODE_VERSION, Size, ZooRecipe, recipe_for
from .tasks import METRIC, EvaluationSets, draw_evaluation_sets, write_tasks

MANIFEST = "zoo.json"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Zoo:
    """A built zoo on disk. Every path is absolute."""

    root: Path
    base: Path  # base model dir (config.json, model.safetensors, tokenizer.json ...)
    experts: dict[str, Path]  # skill/distractor name -> full fine-tuned checkpoint dir
    lora_adapters: dict[str, Path]  # name -> PEFT adapter dir
    tasks_dir: Path  # lm-eval include_path
    skills: tuple[str, ...]  # the skills objectives ask for
    distractors: tuple[str, ...]
    search_tasks: dict[str, str]  # skill (or "composite", "pairs") -> lm-eval task (search split)
    heldout_tasks: dict[str, str]  # same keys -> lm-eval task (held-out split)
    metric: str  # what those tasks report
    # Keys of search_tasks / heldout_tasks that check general ability (not a skill), and what they report.
    checks: tuple[str, ...] = ()
    check_metric: str = "acc"

    def metric_of(self, key: str) -> str:
        return self.check_metric if key in self.checks else self.metric

    def objective(self, key: str, split: str) -> dict[str, str]:
        """The lm-eval task and metric that score ``key`` (a skill, distractor or check) on ``split`` (search or
        heldout), as a MergeSearch objective spells them."""
        tasks = {"search": self.search_tasks, "heldout": self.heldout_tasks}[split]
        return {"task": tasks[key], "metric": self.metric_of(key)}

    @classmethod
    def load(cls, root: Path) -> Zoo:
        m = json.loads((root / MANIFEST).read_text())
        return cls(
            root=root,
            base=root / m["base"],
            experts={k: root / v for k, v in m["experts"].items()},
            lora_adapters={k: root / v for k, v in m["lora_adapters"].items()},
            tasks_dir=root / m["tasks_dir"],
            skills=tuple(m["skills"]),
            distractors=tuple(m["distractors"]),
            search_tasks=m["search_tasks"],
            heldout_tasks=m["heldout_tasks"],
            metric=m["metric"],
            checks=tuple(m.get("checks", ())),
            check_metric=m.get("check_metric", "acc"),
        )


def build_zoo(size: Size = "nano", seed: int = 0, cache_dir: Path | None = None,
              progress: Progress | None = None) -> Zoo:
    """The zoo for (size, seed), built on first use and cached under
    ``${EVOMERGE_CACHE:-~/.cache/evomerge}/zoo/<size>-<seed>-<recipe hash>``."""
    recipe = recipe_for(size)
    final = zoo_dir(cache_dir, size, seed, recipe.digest()).absolute()
    if (final / MANIFEST).is_file():
        return Zoo.load(final)
    say = progress or (lambda _msg: None)
    say(f"building {size} zoo (seed {seed}) into {final}")
    build_atomically(final, lambda tmp: _build_into(tmp, final, recipe, seed, say))
    return Zoo.load(final)


def derive_seed(seed: int, purpose: str) -> int:
    """An independent, stable seed per purpose."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{purpose}".encode()).digest()[:4], "big")


@contextmanager
def fixed_threads(threads: int) -> Iterator[None]:
    """A fixed thread count (the same arithmetic on every machine) and no save progress bars."""
    import torch
    from transformers.utils import logging as hf_logging

    threads_before, bars_before = torch.get_num_threads(), hf_logging.is_progress_bar_enabled()
    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        torch.set_num_threads(threads_before)
        if bars_before:
            hf_logging.enable_progress_bar()


def _build_into(tmp: Path, final: Path, recipe: ZooRecipe, seed: int, say: Progress) -> None:
    from .tokenizer import build_tokenizer

    with fixed_threads(recipe.threads):
        tokenizer = build_tokenizer()
        sets = draw_evaluation_sets(recipe.skills, recipe.distractors, recipe.eval_examples,
                                    derive_seed(seed, "eval"))
        search, heldout = write_tasks(sets, recipe.skills, tmp / "tasks", final / "tasks")
        say(f"tasks written ({len(search)} search, {len(heldout)} held-out)")

        base = _train_base(recipe, seed, tokenizer, sets, say)
        _save_model(base, tokenizer, tmp / "base")
        experts, adapters = {}, {}
        for name in recipe.everyone:
            expert = _train_expert(base, name, recipe, seed, tokenizer, sets, say)
            _save_model(expert, tokenizer, tmp / "experts" / name)
            experts[name] = f"experts/{name}"
        for name in recipe.everyone:
            adapter = _train_lora(base, name, recipe, seed, tokenizer, sets, say)
            save_adapter(adapter, tmp / "lora" / name, final / "base")
            adapters[name] = f"lora/{name}"

    write_manifest(tmp, code_version=CODE_VERSION, size=recipe.size, seed=seed, digest=recipe.digest(),
                   hyper_parameters=asdict(recipe), experts=experts, adapters=adapters, skills=recipe.skills,
                   distractors=recipe.distractors, search=search, heldout=heldout)
    say("zoo complete")


def write_manifest(tmp: Path, *, code_version: str, size: str, seed: int, digest: str, hyper_parameters: dict,
                   experts: dict[str, str], adapters: dict[str, str], skills: tuple[str, ...],
                   distractors: tuple[str, ...], search: dict[str, str], heldout: dict[str, str],
                   checks: dict | None = None) -> None:
    """The manifest ``Zoo.load`` reads (paths relative to the world's root), with every file's hash;
    ``checks``: the general-ability check's keys and metric, for a world that has one."""
    manifest = {
        "code_version": code_version,
        "size": size,
        "seed": seed,
        "recipe": digest,
        "hyper_parameters": hyper_parameters,
        "base": "base",
        "experts": experts,
        "lora_adapters": adapters,
        "tasks_dir": "tasks",
        "skills": list(skills),
        "distractors": list(distractors),
        "search_tasks": search,
        "heldout_tasks": heldout,
        "metric": METRIC,
        **(checks or {}),
        "files": file_hashes(tmp),
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def _new_base_model(recipe: ZooRecipe, tokenizer, seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = recipe.model
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_attention_heads,
        max_position_embeddings=shape.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(derive_seed(seed, "init"))
    return LlamaForCausalLM(config)


def _train_base(recipe: ZooRecipe, seed: int, tokenizer, sets: EvaluationSets, say: Progress):
    from .training import example_stream, train

    world = recipe.pretraining_world()
    model = _new_base_model(recipe, tokenizer, seed)
    stream = example_stream(world.draw_batch, recipe.base.batch_size, derive_seed(seed, "base-data"),
                            sets.prompts())
    loss = train(model, tokenizer, stream, recipe.base, derive_seed(seed, "base-train"),
                 progress=lambda step, loss: say(f"base: step {step}/{recipe.base.steps} loss {loss:.3f}"))
    say(f"base trained (final loss {loss:.3f})")
    return model


def _skill_stream(name: str, recipe: ZooRecipe, seed: int, sets: EvaluationSets, batch_size: int,
                  purpose: str):
    from .skills import SKILLS, draw_example
    from .training import example_stream, single_skill_batches

    skill = SKILLS[name]
    return example_stream(single_skill_batches(lambda rng: draw_example((skill,), rng)), batch_size,
                          derive_seed(seed, f"{purpose}-{name}-data"), sets.prompts())


def _train_expert(base, name: str, recipe: ZooRecipe, seed: int, tokenizer, sets: EvaluationSets,
                  say: Progress):
    from .training import train

    model = copy.deepcopy(base)
    stream = _skill_stream(name, recipe, seed, sets, recipe.expert.batch_size, "expert")
    loss = train(model, tokenizer, stream, recipe.expert, derive_seed(seed, f"expert-{name}"))
    say(f"expert {name} trained (final loss {loss:.3f})")
    return model


def _train_lora(base, name: str, recipe: ZooRecipe, seed: int, tokenizer, sets: EvaluationSets,
                say: Progress):
    import torch
    from peft import LoraConfig, get_peft_model

    from .training import train

    config = LoraConfig(r=recipe.lora_shape.rank, lora_alpha=recipe.lora_shape.alpha,
                        target_modules=list(recipe.lora_shape.target_modules), lora_dropout=0.0,
                        bias="none", task_type="CAUSAL_LM")
    torch.manual_seed(derive_seed(seed, f"lora-init-{name}"))
    with warnings.catch_warnings():  # transformers' own deprecation notice, raised inside PEFT
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(copy.deepcopy(base), config)
    stream = _skill_stream(name, recipe, seed, sets, recipe.lora.batch_size, "lora")
    loss = train(model, tokenizer, stream, recipe.lora, derive_seed(seed, f"lora-{name}"))
    say(f"LoRA {name} trained (final loss {loss:.3f})")
    return model


def _save_model(model, tokenizer, directory: Path) -> None:
    from .tokenizer import save_tokenizer

    model.save_pretrained(str(directory), safe_serialization=True)
    save_tokenizer(tokenizer, directory)


def save_adapter(model, directory: Path, base_final: Path) -> None:
    model.save_pretrained(str(directory), safe_serialization=True)
    (directory / "README.md").unlink(missing_ok=True)  # PEFT's empty model-card template
    # Point at the base where it will live after the rename, so AutoPeftModel finds it.
    config_path = directory / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = str(base_final)
    config["target_modules"] = sorted(config["target_modules"])  # saved from a set: fix the order
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
