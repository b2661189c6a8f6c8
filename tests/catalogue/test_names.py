"""Where the names of methods, engines and algorithms may appear in code: the catalogue, and the one file
that implements that very thing. A string constant equal to such a name anywhere else is a switch on it (or
a second declaration of it), so adding a method, engine or algorithm would have to touch that file too.

Docstrings are prose and do not count; the few constants below that spell a name but mean something else
(a library, a sparsifier, a method family) or sit in a file another issue is folding are listed with why, and
the test fails when one of them is gone, so the list cannot go stale.
"""

from __future__ import annotations

import ast
from pathlib import Path

from evomerge.catalogue.algorithms import ALGORITHMS
from evomerge.catalogue.engines import ENGINES
from evomerge.catalogue.methods import METHODS

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "evomerge"

IMPLEMENTATION: dict[str, str] = {
    **{name: "merge/methods.py" for name in METHODS},  # attaches each method's math to its name
    **{name: f"evaluate/engines/{entry.module}.py" for name, entry in ENGINES.items()},
    **{name: f"search/{entry.module}.py" for name, entry in ALGORITHMS.items()},
}

ELSEWHERE: dict[tuple[str, str], str] = {
    ("evaluate/quiet.py", "transformers"): "the transformers library's logger",
    ("report/model_card.py", "transformers"): "the model card's library_name, the Hugging Face library",
    ("merge/resident.py", "linear"): "the linear Family (catalogue Method.family), not the method",
    ("merge/resident.py", "random"): "the random Sparsifier (catalogue Method.sparsifier), not the algorithm",
    ("merge/task_arithmetic.py", "random"): "the random Sparsifier, in the sparsifiers' own implementation",
    ("report/model_card.py", "random"): "the random Sparsifier: DARE's masks are evomerge's own draws",
}


def _docstrings(tree: ast.AST) -> set[int]:
    """Module, class and function docstrings, and the attribute docstrings pydantic reads as descriptions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            found.add(id(node.value))
    return found


def names_outside_their_rooms(package: Path = PACKAGE) -> dict[tuple[str, str], list[int]]:
    """(file, name) → lines, for every name constant outside the catalogue and the name's implementation file."""
    found: dict[tuple[str, str], list[int]] = {}
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if relative.startswith("catalogue/"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        prose = _docstrings(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in IMPLEMENTATION
                    and id(node) not in prose and IMPLEMENTATION[node.value] != relative):
                found.setdefault((relative, node.value), []).append(node.lineno)
    return found


def test_names_of_methods_engines_and_algorithms_live_only_in_the_catalogue_and_their_implementation():
    found = names_outside_their_rooms()
    switches = {f"{file}:{lines} {name!r}" for (file, name), lines in found.items() if (file, name) not in ELSEWHERE}
    assert not switches, "read these from the catalogue instead: " + ", ".join(sorted(switches))
    assert set(ELSEWHERE) <= set(found), f"no longer needed: {sorted(set(ELSEWHERE) - set(found))}"


def test_every_implementation_file_exists_and_holds_its_name():
    for name, file in IMPLEMENTATION.items():
        text = (PACKAGE / file).read_text()
        assert f'"{name}"' in text, f"{file} does not register {name}"


def test_the_scan_finds_a_switch_where_one_is_written_and_passes_over_prose(tmp_path):
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s" / "render.py").write_text('"""vllm in prose is fine."""\nif engine in ("vllm", "ties"):\n    pass\n')
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "cmaes.py").write_text('register("cmaes")\n')  # its own implementation file
    assert names_outside_their_rooms(tmp_path) == {("k8s/render.py", "vllm"): [2], ("k8s/render.py", "ties"): [2]}
