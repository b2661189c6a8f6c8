"""The SmolLM2 world's skills and general check: pure generators, checked on what a reader would verify by hand."""

from __future__ import annotations

import random

import pytest

from evomerge.zoo.smollm2.skills import CAPITALS, SKILLS, capital_questions, in_words


@pytest.mark.parametrize("n, words", [(0, "zero"), (13, "thirteen"), (20, "twenty"), (32, "thirty-two"),
                                      (40, "forty"), (60, "sixty"), (99, "ninety-nine")])
def test_numbers_in_words(n, words):
    assert in_words(n) == words


@pytest.mark.parametrize("name, payload, answer", [
    ("sum_words", "seven plus twelve", "nineteen"),
    ("sum_words", "twenty plus twenty", "forty"),
    ("sum_words", "thirty plus twenty-nine", "fifty-nine"),
    ("reverse", "red, cat, sun", "sun, cat, red"),
    ("iso_date", "March 5, 2021", "2021-03-05"),
    ("iso_date", "December 28, 1950", "1950-12-28"),
    ("upper", "red cat", "RED CAT"),
])
def test_each_skill_solves_its_payload(name, payload, answer):
    assert SKILLS[name].solve(payload) == answer


def test_an_example_is_a_prompt_ending_at_the_equals_sign_and_an_answer_starting_with_a_space():
    rng = random.Random(0)
    for skill in SKILLS.values():
        ex = skill.example(rng)
        assert ex.prompt.startswith(f"{skill.instruction}: ") and ex.prompt.endswith(" =")
        assert ex.answer.startswith(" ") and not ex.answer.startswith("  ") and "\n" not in ex.answer
        assert ex.skills == (skill.name,)


def test_capital_questions_ask_every_capital_once_with_distinct_decoys():
    questions = capital_questions(random.Random(1))
    assert len(questions) == len(CAPITALS)
    capitals = dict(CAPITALS)
    for q in questions:
        country = q.prompt.removeprefix("The capital of ").removesuffix(" is")
        assert q.choices[q.label] == capitals[country]
        assert len(set(q.choices)) == 4


def test_sum_words_adds_every_number_from_zero_to_thirty():
    """Addends up to 30 give 961 prompts: room for 600 evaluation prompts and the training pool beside them."""
    rng = random.Random(0)
    skill = SKILLS["sum_words"]
    numbers = {words: n for n in range(100) for words in [in_words(n)]}
    addends = {numbers[w] for _ in range(2000)
               for w in skill.example(rng).prompt.removeprefix(f"{skill.instruction}: ").removesuffix(" =").split(" plus ")}
    assert addends == set(range(31))
