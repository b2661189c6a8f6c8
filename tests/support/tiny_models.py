"""Tiny Llama checkpoints and a local lm-eval task, built in the test: no downloads."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

WORDS = ["<unk>", "<pad>", "<s>", "</s>", "yes", "no", "red", "blue", "green", "is", "the", "sky", "grass", "?", "a", "b"]


def save_tokenizer(out: Path) -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(out)
    return fast


def tiny_config(layers: int = 2, hidden: int = 32) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(WORDS), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False,
        bos_token_id=2, eos_token_id=3, pad_token_id=1,
    )


def save_model(model: LlamaForCausalLM, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    save_tokenizer(out)
    return out


def build_family(
    root: Path, n_experts: int = 2, layers: int = 2, seed: int = 0, noise: float = 0.05, *,
    dtype: torch.dtype = torch.float32, hidden: int = 32, shard_bytes: int | None = None,
) -> dict[str, Path]:
    """A base and experts that are the base plus seeded noise: merges differ measurably, nothing is trained.

    `dtype` is the saved dtype; `shard_bytes` saves sharded safetensors (with an index) when set.
    """
    torch.manual_seed(seed)
    base = LlamaForCausalLM(tiny_config(layers, hidden))
    paths = {"base": _save(base, root / "base", dtype, shard_bytes)}
    for i in range(n_experts):
        expert = LlamaForCausalLM(tiny_config(layers, hidden))
        expert.load_state_dict(base.state_dict())
        generator = torch.Generator().manual_seed(seed * 100 + i + 1)
        with torch.no_grad():
            for p in expert.parameters():
                p.add_(torch.randn(p.shape, generator=generator) * noise)
        paths[f"expert{i}"] = _save(expert, root / f"expert{i}", dtype, shard_bytes)
    return paths


def _save(model: LlamaForCausalLM, out: Path, dtype: torch.dtype, shard_bytes: int | None) -> Path:
    model = model.to(dtype)
    if shard_bytes is None:
        return save_model(model, out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True, max_shard_size=shard_bytes)
    save_tokenizer(out)
    return out


def build_lora_adapter(
    base_dir: Path, out: Path, rank: int = 4, alpha: float = 8.0, seed: int = 0, std: float = 0.05,
    targets: tuple[str, ...] = ("q_proj", "v_proj", "down_proj"),
) -> Path:
    """A PEFT LoRA adapter of the model in base_dir with seeded random A and B (B is not left at zero)."""
    from peft import LoraConfig, get_peft_model

    model = LlamaForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    peft_model.save_pretrained(out, safe_serialization=True)
    return out


def write_choice_task(root: Path, name: str = "tiny_colors", n: int = 12) -> Path:
    """A multiple-choice lm-eval task over local JSONL; returns the include_path directory."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [{"question": f"the {'sky' if i % 2 else 'grass'} is", "choices": ["blue", "green", "red"], "label": i % 2}
            for i in range(n)]
    data = root / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / f"{name}.yaml").write_text(
        f"task: {name}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        "doc_to_text: '{{question}}'\n"
        "doc_to_choice: '{{choices}}'\n"
        "doc_to_target: label\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )
    return root


def build_finetune_family(
    root: Path, n_experts: int = 3, layers: int = 4, seed: int = 0, *, hidden: int = 64, changed: float = 0.4,
    scale: float = 0.05, tie_embeddings: bool = True,
) -> dict[str, Path]:
    """bf16 checkpoints shaped like fine-tunes of one base: each expert moves a fraction `changed` of the entries by a
    few percent of their size, so task vectors are a handful of bf16 steps and their magnitudes tie in large groups
    (what TIES's density cut meets on real weights), with tied embeddings as small real models have them."""
    torch.manual_seed(seed)
    config = tiny_config(layers, hidden)
    config.tie_word_embeddings = tie_embeddings
    base = LlamaForCausalLM(config)
    paths = {"base": _save(base, root / "base", torch.bfloat16, None)}
    reference = {n: p.detach().to(torch.bfloat16).float() for n, p in base.state_dict().items()}
    for i in range(n_experts):
        expert = LlamaForCausalLM(config)
        generator = torch.Generator().manual_seed(seed * 100 + i + 1)
        state = {}
        for name, value in reference.items():
            moved = torch.rand(value.shape, generator=generator) < changed
            step = torch.randn(value.shape, generator=generator) * scale * value.abs().mean()
            state[name] = value + step * moved
        expert.load_state_dict(state)
        paths[f"expert{i}"] = _save(expert, root / f"expert{i}", torch.bfloat16, None)
    return paths
