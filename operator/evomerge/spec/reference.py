"""The spec reference in the README, rendered from the types so the docs cannot drift from the code."""

from __future__ import annotations

import json
import typing

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ..catalogue.algorithms import ONE_LONG_ROUND, budget_defaults
from .merge_search import MergeSearchSpec


def _type_name(annotation: typing.Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is typing.Annotated:
        return "number (string)" if any("Number" in repr(m) or "format_number" in repr(m) for m in args[1:]) else _type_name(args[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " \\| ".join(_type_name(a) for a in args if a is not type(None))
    if origin in (list, tuple):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "map"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    if annotation is float:
        return "number (string)"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.alias in ONE_LONG_ROUND.fields():  # the default depends on the algorithm
        special, others = budget_defaults(field.alias)
        return ", ".join([*(f"`{value}` ({name})" for name, value in special), f"`{others}`"])
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    else:
        return "required"
    if isinstance(value, BaseModel):
        return "—"
    if value is None:
        return "unset"
    if isinstance(value, float):
        from .base import format_number

        return f'`"{format_number(value)}"`'
    return f"`{json.dumps(value)}`"


def _nested(annotation: typing.Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        inner = _nested(arg)
        if inner is not None:
            return inner
    return None


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        wire = field.alias or name
        path = f"{prefix}{wire}"
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{path}` | {_type_name(field.annotation)} | {_default(field)} | {description} |")
        nested = _nested(field.annotation)
        if nested is not None:
            marker = "[]" if typing.get_origin(field.annotation) is list else ""
            rows.extend(_rows(nested, f"{path}{marker}."))
    return rows


def render_reference() -> str:
    header = ["| field | type | default | notes |", "|---|---|---|---|"]
    return "\n".join(header + _rows(MergeSearchSpec, "spec."))
