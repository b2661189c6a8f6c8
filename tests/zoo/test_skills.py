import random

from evomerge.zoo.skills import ALPHABET, SKILLS, draw_example, make_example
from evomerge.zoo.tasks import draw_evaluation_sets


def test_each_skill_solves_its_payload():
    assert SKILLS["add"].solve("7 995") == "1002"
    assert SKILLS["rev"].solve("abcd") == "dcba"
    assert SKILLS["spell"].solve("407") == "four zero seven"
    assert SKILLS["upper"].solve("abc") == "ABC"


def test_a_pair_prompt_needs_both_skills():
    ex = make_example((SKILLS["add"], SKILLS["rev"]), ("1 200", "abc"), (True, True))
    assert (ex.prompt, ex.answer) == ("add 1 200|rev abc=", "201|cba")
    half = make_example((SKILLS["add"], SKILLS["rev"]), ("1 200", "abc"), (True, False))
    assert half.answer == "201|abc"  # the base model's default: echo the payload


def test_everything_is_written_in_the_alphabet():
    rng = random.Random(0)
    for _ in range(200):
        ex = draw_example((SKILLS[rng.choice(list(SKILLS))], SKILLS["spell"]), rng)
        assert set(ex.prompt + ex.answer) <= set(ALPHABET)


def test_search_and_heldout_splits_are_disjoint_and_deterministic():
    sets = draw_evaluation_sets(("add", "rev", "spell"), ("upper",), per_split=50, seed=3)
    for key in ("add", "rev", "spell", "upper", "pairs"):
        search = {e.prompt for e in sets.examples[(key, "search")]}
        heldout = {e.prompt for e in sets.examples[(key, "heldout")]}
        assert len(search) == len(heldout) == 50
        assert not search & heldout
    again = draw_evaluation_sets(("add", "rev", "spell"), ("upper",), per_split=50, seed=3)
    assert again == sets
