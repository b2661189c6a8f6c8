import dataclasses

import pytest

from evomerge.zoo import RECIPES, recipe_for


def test_the_cache_key_changes_with_any_hyper_parameter():
    nano = recipe_for("nano")
    assert nano.digest() == recipe_for("nano").digest()
    tweaked = dataclasses.replace(nano, base=dataclasses.replace(nano.base, lr=nano.base.lr * 2))
    assert tweaked.digest() != nano.digest()
    assert RECIPES["small"].digest() != nano.digest()


def test_an_unknown_size_names_the_known_ones():
    with pytest.raises(ValueError, match="nano, small"):
        recipe_for("huge")
