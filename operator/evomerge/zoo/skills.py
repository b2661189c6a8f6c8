"""The skills of the zoo world: pure generators of prompts and answers.

Every prompt reads ``"<skill> <payload>="`` and every answer ends at a newline; a pair prompt joins two
of them with ``|`` (``"add 1 200|rev abc="`` -> ``"201|cba"``) and needs both skills at once.

The base model's pretraining world: for a plain prompt the answer is the skill's only some of the
time, otherwise the *echo* (the payload copied back), so the base knows every format and every skill
but prefers to echo; a cued prompt (``"rev! abc="``) always gets the skill's answer, so the skill
itself is well learned. An expert is a short fine-tuning run that makes its skill the preferred answer
of the plain prompt. Its task vector is then a small move from a shared basin that flips one
preference, and merges can add several of them up instead of averaging them away.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

LETTERS = "abcdefghijklmnopqrstuvwxyz"
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PAIR_SEPARATOR = "|"
CUE = "!"
ANSWER_END = "\n"
# Every character a prompt or answer can hold, in the tokenizer's order.
ALPHABET = LETTERS + LETTERS.upper() + "0123456789" + " =" + PAIR_SEPARATOR + ANSWER_END + CUE


@dataclass(frozen=True)
class Skill:
    """One skill: how to draw a payload, and the correct answer for it."""

    name: str
    description: str
    draw_payload: Callable[[random.Random], str]
    solve: Callable[[str], str]


def _draw_add(rng: random.Random) -> str:
    # The digit comes first so that the sum and the echo differ from their first character on.
    return f"{rng.randrange(10)} {rng.randrange(100, 1000)}"


def _solve_add(payload: str) -> str:
    left, right = payload.split(" ")
    return str(int(left) + int(right))


def _draw_word(rng: random.Random) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 6)))


def _draw_digits(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 4)))


def _solve_spell(payload: str) -> str:
    return " ".join(DIGIT_WORDS[int(d)] for d in payload)


SKILLS: dict[str, Skill] = {
    s.name: s
    for s in (
        Skill("add", "add a digit and a three-digit number", _draw_add, _solve_add),
        Skill("rev", "reverse a lowercase word", _draw_word, lambda p: p[::-1]),
        Skill("spell", "spell digits as words", _draw_digits, _solve_spell),
        Skill("upper", "uppercase a lowercase word", _draw_word, str.upper),
    )
}


@dataclass(frozen=True)
class Example:
    """One prompt with the answer to teach or to expect; ``skills`` names the skills it needs."""

    prompt: str
    answer: str
    skills: tuple[str, ...]


def make_example(skills: tuple[Skill, ...], payloads: tuple[str, ...],
                 correct: tuple[bool, ...], cued: bool = False) -> Example:
    """Join one part per skill; each part's answer is the skill's, or the echo where not ``correct``."""
    cue = CUE if cued else ""
    prompt = PAIR_SEPARATOR.join(f"{s.name}{cue} {p}" for s, p in zip(skills, payloads)) + "="
    answer = PAIR_SEPARATOR.join(
        s.solve(p) if ok else p for s, p, ok in zip(skills, payloads, correct)
    )
    return Example(prompt, answer, tuple(s.name for s in skills))


def draw_example(skills: tuple[Skill, ...], rng: random.Random,
                 p_correct: dict[str, float] | None = None) -> Example:
    """A fresh example; with ``p_correct`` each part is correct only with its skill's probability
    (the base model's world), otherwise always correct (an expert's or an evaluation's world)."""
    payloads = tuple(s.draw_payload(rng) for s in skills)
    if p_correct is None:
        correct = (True,) * len(skills)
    else:
        correct = tuple(rng.random() < p_correct[s.name] for s in skills)
    return make_example(skills, payloads, correct)


@dataclass(frozen=True)
class PretrainingWorld:
    """The distribution the base model is trained on."""

    skills: tuple[str, ...]
    weights: tuple[float, ...]  # how often each skill is drawn
    p_correct: dict[str, float]  # per skill: how often a plain prompt gets the skill's answer
    cue_fraction: float  # share of single prompts that carry the cue (always answered correctly)
    pair_fraction: float  # share of prompts that join two different skills

    def draw(self, rng: random.Random, pair: bool = False) -> Example:
        first = SKILLS[rng.choices(self.skills, self.weights)[0]]
        if pair:
            second = first
            while second is first:
                second = SKILLS[rng.choices(self.skills, self.weights)[0]]
            return draw_example((first, second), rng, self.p_correct)
        if rng.random() < self.cue_fraction:
            return make_example((first,), (first.draw_payload(rng),), (True,), cued=True)
        return draw_example((first,), rng, self.p_correct)

    def draw_batch(self, rng: random.Random, size: int) -> list[Example]:
        """Pairs come in batches of their own: short rows are not padded to a pair's length."""
        pair = rng.random() < self.pair_fraction
        return [self.draw(rng, pair) for _ in range(size)]
