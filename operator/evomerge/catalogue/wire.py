"""How every field of a resource is written: camelCase names, unknown fields refused, numbers as strings.

The spec's types are built on these, and so are the option blocks the catalogue declares next to their
algorithm (`algorithms`), which is why they sit here, below the spec: a block is one declaration that the spec,
the CRD schema and the README read.

Floats are written as strings in resource specs (Kubernetes API conventions avoid floats because
clients round-trip them differently); locally a plain YAML number is accepted too.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema
from pydantic.alias_generators import to_camel

# At most 15 integer digits and a two-digit exponent: every number the pattern admits is a finite double,
# so the API server's CEL rules can read it (double("1e309") is a CEL type error, not a refusal).
NUMBER_PATTERN = r"^[-+]?([0-9]{1,15}(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]{1,2})?$"


def _parse_number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number written as a string such as \"0.5\", got a boolean")
    if isinstance(value, (int, float)):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number; write a decimal such as \"0.5\"") from None
    else:
        raise ValueError(f"expected a number written as a string such as \"0.5\", got {type(value).__name__}")
    if not math.isfinite(result):
        raise ValueError(f"{value!r} is not a finite number")
    return result


def format_number(value: float) -> str:
    """Shortest decimal that reads back to the same float ("1" rather than "1.0")."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


Number = Annotated[
    float,
    BeforeValidator(_parse_number),
    PlainSerializer(format_number, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": NUMBER_PATTERN}),
]


class SpecModel(BaseModel):
    """camelCase on the wire, snake_case in Python, and unknown fields are errors (typos must not pass)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
        use_attribute_docstrings=True,  # a docstring under a field is its description (kubectl explain, the README)
    )

    def to_wire(self) -> dict[str, Any]:
        """The resource as it is written to YAML or to the Kubernetes API."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
