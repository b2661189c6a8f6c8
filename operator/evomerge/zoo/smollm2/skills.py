"""The skills of the SmolLM2 world, and the general-ability check its base already passes.

Every prompt reads ``"<instruction>: <payload> ="`` and its answer starts with a space and ends at a newline, so
the base's BPE tokenizer splits prompt and answer where the model will. The base half knows some of them (it
writes dates in ISO form, but sums digits, not words), so an expert is a short fine-tune that makes one skill
reliable; experts trained on the same prompt shape pull the shared weights in different directions, which is
what a naive merge averages away.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from ..skills import Example

ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
# Addends of sum_words: 0-30, so 31² = 961 distinct prompts, enough for the evaluation splits (recipe.py: 600) and
# the 361 the training stream keeps (as many as 0-20 left beside 80 evaluation prompts, from which a 300-step LoRA
# expert learned the skill).
ADDENDS = 31
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
WORDS = ("red", "cat", "sun", "dog", "tree", "book", "milk", "car", "fish", "rain", "door", "bird", "cake", "lamp",
         "ship", "moon", "rose", "king", "gold", "snow", "frog", "road", "hat", "bell", "corn", "wolf", "star",
         "salt", "ring", "boat", "egg", "fire", "leaf", "coin", "bear", "sand", "wind", "key", "box", "cup")


def in_words(n: int) -> str:
    """0 ≤ n < 100 in English words (``thirty-two``)."""
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] + (f"-{ONES[ones]}" if ones else "")


@dataclass(frozen=True)
class Skill:
    """One skill: its instruction, how to draw a payload, and the correct answer for it."""

    name: str
    instruction: str
    draw_payload: Callable[[random.Random], str]
    solve: Callable[[str], str]

    def example(self, rng: random.Random) -> Example:
        payload = self.draw_payload(rng)
        return Example(f"{self.instruction}: {payload} =", f" {self.solve(payload)}", (self.name,))


def _draw_sum(rng: random.Random) -> str:
    return f"{in_words(rng.randrange(ADDENDS))} plus {in_words(rng.randrange(ADDENDS))}"


def _solve_sum(payload: str) -> str:
    left, right = payload.split(" plus ")
    return in_words(_from_words(left) + _from_words(right))


def _from_words(word: str) -> int:
    return next(n for n in range(100) if in_words(n) == word)


def _draw_list(rng: random.Random) -> str:
    return ", ".join(rng.sample(WORDS, rng.randint(3, 4)))


def _draw_date(rng: random.Random) -> str:
    return f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {rng.randint(1950, 2029)}"


def _solve_date(payload: str) -> str:
    month_day, year = payload.split(", ")
    month, day = month_day.split(" ")
    return f"{year}-{MONTHS.index(month) + 1:02d}-{int(day):02d}"


def _draw_phrase(rng: random.Random) -> str:
    return " ".join(rng.sample(WORDS, rng.randint(2, 3)))


SKILLS: dict[str, Skill] = {
    s.name: s
    for s in (
        Skill("sum_words", "Add in words", _draw_sum, _solve_sum),
        Skill("reverse", "Reverse the list", _draw_list, lambda p: ", ".join(reversed(p.split(", ")))),
        Skill("iso_date", "Date to ISO", _draw_date, _solve_date),
        Skill("upper", "Uppercase", _draw_phrase, str.upper),
    )
}

# The general-ability check: capitals a 135M model knows, asked as multiple choice (the log-likelihood of each
# capital after the prompt), so it measures knowledge rather than the format of an answer.
CAPITALS = (
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
    ("China", "Beijing"), ("Russia", "Moscow"), ("England", "London"), ("Egypt", "Cairo"), ("Greece", "Athens"),
    ("Portugal", "Lisbon"), ("Austria", "Vienna"), ("Ireland", "Dublin"), ("Norway", "Oslo"),
    ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Poland", "Warsaw"),
    ("Hungary", "Budapest"), ("Canada", "Ottawa"), ("Mexico", "Mexico City"), ("Argentina", "Buenos Aires"),
    ("Peru", "Lima"), ("Chile", "Santiago"), ("Colombia", "Bogota"), ("India", "New Delhi"),
    ("Thailand", "Bangkok"), ("South Korea", "Seoul"), ("Indonesia", "Jakarta"), ("Philippines", "Manila"),
    ("Vietnam", "Hanoi"), ("Kenya", "Nairobi"), ("Turkey", "Ankara"), ("Iran", "Tehran"), ("Iraq", "Baghdad"),
    ("Cuba", "Havana"), ("Belgium", "Brussels"), ("Netherlands", "Amsterdam"), ("Switzerland", "Bern"),
    ("Czech Republic", "Prague"), ("Australia", "Canberra"), ("New Zealand", "Wellington"),
    ("the United States", "Washington"), ("Brazil", "Brasilia"), ("Saudi Arabia", "Riyadh"),
    ("Ukraine", "Kyiv"), ("Romania", "Bucharest"), ("Bulgaria", "Sofia"), ("Nigeria", "Abuja"),
    ("Ethiopia", "Addis Ababa"), ("Morocco", "Rabat"), ("Pakistan", "Islamabad"), ("Afghanistan", "Kabul"),
    ("Syria", "Damascus"), ("Lebanon", "Beirut"), ("Israel", "Jerusalem"), ("Venezuela", "Caracas"),
    ("Iceland", "Reykjavik"), ("Scotland", "Edinburgh"), ("Serbia", "Belgrade"),
)


@dataclass(frozen=True)
class Question:
    """One multiple-choice question of the general check."""

    prompt: str
    choices: tuple[str, ...]
    label: int


def capital_questions(rng: random.Random, choices: int = 4) -> list[Question]:
    """Every capital question once, in a shuffled order, each with ``choices - 1`` other capitals as decoys."""
    out = []
    capitals = [c for _, c in CAPITALS]
    for country, capital in rng.sample(CAPITALS, len(CAPITALS)):
        options = rng.sample([c for c in capitals if c != capital], choices - 1) + [capital]
        rng.shuffle(options)
        out.append(Question(f"The capital of {country} is", tuple(options), options.index(capital)))
    return out
