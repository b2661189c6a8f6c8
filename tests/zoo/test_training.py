import random

import torch

from evomerge.zoo.skills import SKILLS, PretrainingWorld, draw_example
from evomerge.zoo.tokenizer import build_tokenizer
from evomerge.zoo.training import IGNORE_INDEX, Schedule, encode, example_stream, single_skill_batches, train


def test_only_the_answer_and_its_newline_are_learned():
    tokenizer = build_tokenizer()
    batch = encode(tokenizer, [draw_example((SKILLS["rev"],), random.Random(0))])
    learned = [t for t in batch["labels"][0].tolist() if t != IGNORE_INDEX]
    ex = draw_example((SKILLS["rev"],), random.Random(0))
    assert tokenizer.decode(learned) == ex.answer + "\n"


def test_streams_never_show_an_evaluation_prompt():
    rev = single_skill_batches(lambda rng: draw_example((SKILLS["rev"],), rng))
    held = frozenset(ex.prompt for ex in next(example_stream(rev, 500, seed=1)))
    batch = next(example_stream(rev, 500, seed=1, exclude=held))
    assert len(batch) == 500 and not {ex.prompt for ex in batch} & held


def test_the_pretraining_world_mixes_echo_cues_and_pairs():
    world = PretrainingWorld(skills=("add", "rev"), weights=(1.0, 1.0), p_correct={"add": 0.1, "rev": 0.1},
                             cue_fraction=0.3, pair_fraction=0.5)
    rng = random.Random(0)
    batches = [world.draw_batch(rng, 20) for _ in range(100)]
    assert all(len({len(ex.skills) for ex in b}) == 1 for b in batches)  # pairs batched apart
    singles = [ex for b in batches for ex in b if len(ex.skills) == 1]
    cued = [ex for ex in singles if "!" in ex.prompt]
    assert all(SKILLS[ex.skills[0]].solve(ex.prompt.split(" ", 1)[1][:-1]) == ex.answer for ex in cued)
    plain = [ex for ex in singles if "!" not in ex.prompt]
    echoed = sum(ex.prompt.split(" ", 1)[1][:-1] == ex.answer for ex in plain)
    assert echoed / len(plain) > 0.8  # the base model's world: mostly echo


def test_training_is_deterministic():
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        stream = example_stream(single_skill_batches(lambda rng: draw_example((SKILLS["upper"],), rng)), 8, 3)
        train(model, tokenizer, stream, Schedule(steps=5, batch_size=8, lr=1e-3), seed=0)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
