"""The real vLLM server the engine tests score through: one per test session, on the nano zoo's base.

It is the CPU build `hack/vllm/install.sh` installs (`make test` runs it first); a missing install is an
error that names the script, never a skip. Tests that swap weights put the base back before they end,
so every test sees the server serving `nano_zoo.base`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from evomerge.evaluate.engines.vllm_process import VLLMServerProcess
from evomerge.zoo import Zoo

# The zoo's max_position_embeddings; vLLM refuses a longer context. Small also keeps its KV cache small.
MAX_MODEL_LEN = 128


def start_vllm(model_dir: Path, log_dir: Path) -> VLLMServerProcess:
    return VLLMServerProcess.start(model_dir, log_dir / "vllm.log", max_model_len=MAX_MODEL_LEN)


@pytest.fixture(scope="session")
def vllm_server(nano_zoo: Zoo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServerProcess]:
    with start_vllm(nano_zoo.base, tmp_path_factory.mktemp("vllm")) as server:
        yield server


ANSWER_TASK = "zoo_pairs_answer"


def write_answer_task(zoo: Zoo, directory: Path) -> Path:
    """A loglikelihood task over the zoo's two-skill prompts (the zoo's own tasks are generate_until): the
    log-probability of each answer, reported as perplexity."""
    import yaml

    (directory / f"{ANSWER_TASK}.yaml").write_text(yaml.safe_dump({
        "task": ANSWER_TASK, "dataset_path": "json", "test_split": "test",
        "dataset_kwargs": {"data_files": {"test": str(zoo.tasks_dir / "pairs_search.jsonl")}},
        "output_type": "loglikelihood", "doc_to_text": "{{prompt}}", "doc_to_target": "{{answer}}",
        "target_delimiter": "",
        "metric_list": [{"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False}],
        "metadata": {"version": 1.0},
    }))
    return directory
