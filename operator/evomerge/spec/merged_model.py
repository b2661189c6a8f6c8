"""MergedModel: a published merge — recipe, lineage and scores — versioned as new rounds improve it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .base import GROUP_VERSION, Condition, Number, ObjectMeta, ResourceRequirements, SpecModel


class LineageEntry(SpecModel):
    name: str
    uri: str
    revision: str | None = None
    sha256: str | None = Field(default=None, description="Content hash of the checkpoint's weight files.")


class Scores(SpecModel):
    search: dict[str, Number] = Field(default_factory=dict)
    held_out: dict[str, Number] = Field(default_factory=dict)


class ServingSpec(SpecModel):
    enabled: bool = False
    engine: Literal["tgi", "vllm"] = "tgi"
    replicas: int = Field(default=1, ge=0, le=100)
    image: str | None = None
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)


class MergedModelSpec(SpecModel):
    search: str = Field(min_length=1, description="Name of the MergeSearch that found this merge.")
    version: int = Field(default=1, ge=1)
    recipe: dict[str, Any] = Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    lineage: list[LineageEntry] = Field(default_factory=list)
    scores: Scores = Field(default_factory=Scores)
    output_uri: str = Field(min_length=1)
    serving: ServingSpec = Field(default_factory=ServingSpec)


class MergedModelStatus(SpecModel):
    phase: Literal["Pending", "Exporting", "Ready", "Failed"] | None = None
    version: int | None = None
    output_uri: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None


class MergedModel(SpecModel):
    """The best merge a MergeSearch found, exported to a checkpoint."""

    api_version: Literal["evomerge.dev/v1alpha1"] = GROUP_VERSION
    kind: Literal["MergedModel"] = "MergedModel"
    metadata: ObjectMeta
    spec: MergedModelSpec
    status: MergedModelStatus | None = None
