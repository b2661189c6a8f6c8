"""Expert: a checkpoint offered to searches whose expertSelector matches its labels."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import GROUP_VERSION, Condition, ObjectMeta, SpecModel, conditions_field, uri_field


class ExpertSpec(SpecModel):
    uri: str = uri_field()
    """Where the checkpoint lives: hf://org/name, file:///abs/path, pvc://claim/path or s3://bucket/key."""
    revision: str | None = None
    """The hub revision (branch, tag or commit) to read."""
    format: Literal["full", "lora"] = "full"
    """full: fine-tuned weights; lora: a PEFT adapter over its base model."""
    base_model: str | None = Field(default=None, description="URI of the base model this expert was tuned from.")


class ExpertStatus(SpecModel):
    compatible: bool | None = None
    reason: str | None = None
    message: str | None = None
    conditions: list[Condition] = conditions_field()
    observed_generation: int | None = None


class Expert(SpecModel):
    """A fine-tuned checkpoint (full or LoRA) that searches can pick up by label."""

    api_version: Literal["evomerge.dev/v1alpha1"] = GROUP_VERSION
    kind: Literal["Expert"] = "Expert"
    metadata: ObjectMeta
    spec: ExpertSpec
    status: ExpertStatus | None = None
