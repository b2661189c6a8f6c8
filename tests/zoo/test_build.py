import json
import logging
import os
from pathlib import Path

import pytest
import torch

from evomerge.zoo import build_zoo
from evomerge.zoo.build import MANIFEST

NANO_BUDGET_S = 60.0


def test_nano_builds_within_budget(nano_build):
    # CPU seconds of the build process: on an idle 2-core machine, wall time is at most this.
    assert nano_build.cpu_s <= NANO_BUDGET_S, f"nano zoo took {nano_build.cpu_s:.0f} CPU s"


def test_zoo_has_skills_a_distractor_and_split_tasks(nano_zoo):
    assert len(nano_zoo.skills) >= 3 and len(nano_zoo.distractors) >= 1
    everyone = set(nano_zoo.skills) | set(nano_zoo.distractors)
    assert set(nano_zoo.experts) == set(nano_zoo.lora_adapters) == everyone
    for key in [*everyone, "composite", "pairs"]:
        assert nano_zoo.search_tasks[key] != nano_zoo.heldout_tasks[key]
    assert nano_zoo.metric == "exact_match"


def test_a_second_call_is_served_from_the_cache(nano_zoo):
    cache_dir = nano_zoo.root.parent.parent
    before = os.stat(nano_zoo.root / MANIFEST).st_mtime_ns
    assert build_zoo("nano", seed=0, cache_dir=cache_dir) == nano_zoo
    assert os.stat(nano_zoo.root / MANIFEST).st_mtime_ns == before
    assert nano_zoo.root.name.startswith("nano-0-")


def test_checkpoints_load_in_transformers(nano_zoo):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for directory in [nano_zoo.base, *nano_zoo.experts.values()]:
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in directory.iterdir()}
        model = AutoModelForCausalLM.from_pretrained(directory)
        assert model.config.model_type == "llama"
    tokenizer = AutoTokenizer.from_pretrained(nano_zoo.base)
    ids = tokenizer("rev abc=")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and len(ids) == 1 + len("rev abc=")
    assert tokenizer.decode(ids, skip_special_tokens=True) == "rev abc="
    out = model.generate(torch.tensor([ids]), max_new_tokens=3, do_sample=False)
    assert out.shape == (1, len(ids) + 3)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers deprecation inside PEFT
def test_lora_adapters_load_with_peft(nano_zoo):
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM

    for name, adapter in nano_zoo.lora_adapters.items():
        assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter.iterdir()}
        config = json.loads((adapter / "adapter_config.json").read_text())
        assert Path(config["base_model_name_or_path"]) == nano_zoo.base
    base = AutoModelForCausalLM.from_pretrained(nano_zoo.base)
    model = PeftModel.from_pretrained(base, nano_zoo.lora_adapters["rev"])
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # trained, not the zero init
    assert AutoPeftModelForCausalLM.from_pretrained(nano_zoo.lora_adapters["add"]) is not None


def test_rebuilds_are_byte_identical(nano_zoo, tmp_path):
    other = build_zoo("nano", seed=0, cache_dir=tmp_path)
    mine = json.loads((nano_zoo.root / MANIFEST).read_text())["files"]
    theirs = json.loads((other.root / MANIFEST).read_text())["files"]
    assert mine.keys() == theirs.keys()
    for rel in mine:
        a = (nano_zoo.root / rel).read_bytes().replace(str(nano_zoo.root).encode(), b"<root>")
        b = (other.root / rel).read_bytes().replace(str(other.root).encode(), b"<root>")
        assert a == b, f"{rel} differs between two builds of the same recipe and seed"


def _lm_eval_scores(zoo, directories: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Exact match per task key (skills, distractors, composite, pairs) of each checkpoint."""
    from lm_eval.evaluator import evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    model = AutoModelForCausalLM.from_pretrained(zoo.base)
    lm = HFLM(pretrained=model, tokenizer=AutoTokenizer.from_pretrained(zoo.base), batch_size=64)
    manager = TaskManager(include_path=str(zoo.tasks_dir), include_defaults=False)
    tasks = manager.load([zoo.search_tasks[k] for k in ["composite", "pairs", *zoo.distractors]])
    keys = [*zoo.skills, *zoo.distractors, "composite", "pairs"]
    scores = {}
    for label, directory in directories.items():
        model.load_state_dict(load_file(str(directory / "model.safetensors")))
        results = evaluate(lm=lm, task_dict=tasks, bootstrap_iters=0, log_samples=False)["results"]
        scores[label] = {k: results[zoo.search_tasks[k]][f"{zoo.metric},none"] for k in keys}
    return scores


@pytest.fixture(scope="module")
def nano_scores(nano_zoo):
    return _lm_eval_scores(nano_zoo, {"base": nano_zoo.base, **nano_zoo.experts})


def test_tasks_run_through_lm_eval(nano_scores, nano_zoo):
    for scores in nano_scores.values():
        assert all(0.0 <= v <= 1.0 for v in scores.values())
    composite = nano_scores["base"]["composite"]
    mean = sum(nano_scores["base"][s] for s in nano_zoo.skills) / len(nano_zoo.skills)
    assert composite == pytest.approx(mean)


def _answer_logprob(directory: Path, tokenizer, rows: list[dict]) -> float:
    """Mean log-probability per answer token, teacher-forced: moves even where exact match is 0."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            prompt = tokenizer(row["prompt"])["input_ids"]
            answer = tokenizer(row["answer"] + "\n", add_special_tokens=False)["input_ids"]
            logits = model(torch.tensor([prompt + answer])).logits[0, len(prompt) - 1:-1]
            total += logits.log_softmax(-1).gather(1, torch.tensor(answer)[:, None]).sum().item()
            count += len(answer)
    return total / count


def test_experts_beat_the_base_on_their_own_skill(nano_scores, nano_zoo):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(nano_zoo.base)
    for name in [*nano_zoo.skills, *nano_zoo.distractors]:
        rows = [json.loads(line) for line in (nano_zoo.tasks_dir / f"{name}_search.jsonl").open()][:20]
        base = _answer_logprob(nano_zoo.base, tokenizer, rows)
        expert = _answer_logprob(nano_zoo.experts[name], tokenizer, rows)
        assert expert > base + 0.1, f"expert {name!r}: log-prob per answer token {expert:.2f} vs base {base:.2f}"
    # Exact match needs the whole answer right; two layers trained for seconds manage it for some skills.
    gains = [nano_scores[n][n] - nano_scores["base"][n] for n in [*nano_zoo.skills, *nano_zoo.distractors]]
    assert sum(g >= 0.3 for g in gains) >= 2, f"exact-match gains of the experts: {gains}"
