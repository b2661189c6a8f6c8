"""Reading resources from YAML with errors that name the field and say how to fix it."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .expert import Expert
from .merge_search import MergeSearch
from .merged_model import MergedModel

RESOURCE_TYPES: dict[str, type[BaseModel]] = {"MergeSearch": MergeSearch, "MergedModel": MergedModel, "Expert": Expert}
T = TypeVar("T", bound=BaseModel)


class SpecError(ValueError):
    """A resource that cannot be used, with one line per problem: `field.path: what is wrong — how to fix it`."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid spec\n" + "\n".join(f"  - {p}" for p in problems))


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Wire names of the fields allowed at a location, for did-you-mean hints."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        for args in list(candidates):
            candidates.extend(getattr(args, "__args__", ()))
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _describe(model: type[BaseModel], error: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[") or "(document)"
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed here: {', '.join(allowed)}" if allowed else ""
        return f"{path}: unknown field — {hint}".rstrip(" —")
    if kind == "missing":
        return f"{path}: required field is missing — add it"
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
        return f"{path}: {message}" if loc else message
    got = error.get("input")
    shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
    return f"{path}: {message}{shown}"


def validate_document(document: Any, source: str, expected: type[T] | None = None) -> T:
    """Validate one parsed YAML/JSON document as a resource; raise SpecError listing every problem."""
    if not isinstance(document, dict):
        raise SpecError(source, ["the document must be a mapping with apiVersion, kind, metadata and spec"])
    kind = document.get("kind")
    if expected is None:
        if kind not in RESOURCE_TYPES:
            raise SpecError(source, [f"kind: {kind!r} is not an evomerge resource — use one of {', '.join(RESOURCE_TYPES)}"])
        expected = RESOURCE_TYPES[kind]  # type: ignore[assignment]
    try:
        return expected.model_validate(document)  # type: ignore[union-attr,return-value]
    except ValidationError as exc:
        problems = [_describe(expected, e) for e in exc.errors()]  # type: ignore[arg-type]
        raise SpecError(source, problems) from None


def load_resource(path: Path, expected: type[T]) -> T:
    """Load one resource from a YAML file. A bare spec (no kind) is accepted and named after the file."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(str(path), [f"cannot read the file: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise SpecError(str(path), [f"not valid YAML: {exc}"]) from None
    if isinstance(document, dict) and "kind" not in document and "spec" not in document:
        name = "".join(c if c.isalnum() else "-" for c in path.stem.lower()).strip("-") or "search"
        document = {"kind": expected.__name__, "metadata": {"name": name}, "spec": document}
    return validate_document(document, str(path), expected)
