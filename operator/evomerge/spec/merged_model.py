"""MergedModel: a published merge — recipe, lineage and scores — versioned as new rounds improve it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .base import GROUP_VERSION, Condition, Number, ObjectMeta, ResourceRequirements, SpecModel, conditions_field


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
    output_uri: str = Field(min_length=1, max_length=1024, description="Where this version is exported: pvc://<claim>/<path>.")
    serving: ServingSpec = Field(default_factory=ServingSpec)


class MergedModelStatus(SpecModel):
    """What the export measured: the version on storage, its held-out scores and the inputs' content hashes."""

    phase: Literal["Pending", "Exporting", "Ready", "Failed"] | None = None
    version: int | None = Field(default=None, description="The version whose checkpoint is written and scored.")
    output_uri: str | None = None
    output_sha256: str | None = Field(
        default=None, description="Content hash of the exported checkpoint, read back at outputUri after it was written."
    )
    scores: Scores = Field(default_factory=Scores)
    lineage: list[LineageEntry] = Field(default_factory=list, description="Inputs of the exported version, with content hashes.")
    export_job: str | None = None
    endpoint: str | None = Field(default=None, description="In-cluster URL of the serving Service, when serving is enabled.")
    conditions: list[Condition] = conditions_field()
    observed_generation: int | None = None


class MergedModel(SpecModel):
    """The best merge a MergeSearch found, exported to a checkpoint."""

    api_version: Literal["evomerge.dev/v1alpha1"] = GROUP_VERSION
    kind: Literal["MergedModel"] = "MergedModel"
    metadata: ObjectMeta
    spec: MergedModelSpec
    status: MergedModelStatus | None = None
