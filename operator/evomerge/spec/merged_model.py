"""MergedModel: a published merge — recipe, lineage and scores — versioned as new rounds improve it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..catalogue.engines import DEFAULT_SERVING_ENGINE, ServingEngineName
from .base import GROUP_VERSION, Condition, Number, ObjectMeta, ResourceRequirements, SpecModel, conditions_field


class LineageEntry(SpecModel):
    name: str
    """base, or the expert's name."""
    uri: str
    """Where the input lies."""
    revision: str | None = None
    """The input's hub revision, when pinned."""
    sha256: str | None = Field(default=None, description="Content hash of the checkpoint's weight files.")


class Scores(SpecModel):
    search: dict[str, Number] = Field(default_factory=dict)
    """Objective (task/metric) → score on the search objectives."""
    held_out: dict[str, Number] = Field(default_factory=dict)
    """Objective (task/metric) → score on the held-out objectives."""


class ServingSpec(SpecModel):
    enabled: bool = False
    """Serve the exported version from a Deployment and Service."""
    engine: ServingEngineName = DEFAULT_SERVING_ENGINE
    """The server that serves the exported version."""
    replicas: int = Field(default=1, ge=0, le=100)
    """Server pods."""
    image: str | None = None
    """The server image; unset: the pinned upstream image."""
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    """Requests and limits of the server container."""


class MergedModelSpec(SpecModel):
    search: str = Field(min_length=1, description="Name of the MergeSearch that found this merge.")
    version: int = Field(default=1, ge=1)
    """The version to export; each new best of the search raises it."""
    recipe: dict[str, Any] = Field(json_schema_extra={
        "x-kubernetes-preserve-unknown-fields": True, "required": ["method", "experts"],  # what every recipe names
        "properties": {"method": {"type": "string", "description": "The merge method."},
                       "experts": {"type": "array", "description": "The merged experts, each with its parameters.",
                                   "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}},
    })
    """The merge recipe: method, base, experts and their parameters per layer group."""
    lineage: list[LineageEntry] = Field(default_factory=list)
    """The inputs of the merge with their revisions."""
    scores: Scores = Field(default_factory=Scores)
    """The scores the search measured."""
    output_uri: str = Field(min_length=1, max_length=1024, description="Where this version is exported: pvc://<claim>/<path>.")
    serving: ServingSpec = Field(default_factory=ServingSpec)
    """An optional vLLM or TGI Deployment serving the exported version."""


PROMOTE_ANNOTATION = "evomerge.dev/promote"  # value: the candidate version a user publishes by hand


class PairedTestResult(SpecModel):
    """The paired test of a candidate against the published version on the same heldOut items."""

    test: Literal["mcnemar", "bootstrap"] = Field(description="mcnemar: exact, on pass/fail items; bootstrap: paired, seeded.")
    items: int = Field(ge=0)
    baseline: Number = Field(description="The weighted heldOut objective of the published version, on these items.")
    candidate: Number = Field(description="The same for the candidate.")
    p_value: Number
    discordant: list[int] | None = Field(
        default=None, description="McNemar: [items only the candidate passes, items only the published version passes]."
    )


class PromotionDecision(SpecModel):
    """What the promotion gate decided about the last exported version, and why."""

    version: int = Field(description="The version judged.")
    published_version: int | None = Field(default=None, description="The version it was compared with, if any.")
    promoted: bool
    reason: str = Field(description="FirstVersion, PolicyAlways, Improved, NotPromoted or PromotedByHand.")
    message: str
    test: PairedTestResult | None = None
    published_held_out: dict[str, Number] = Field(
        default_factory=dict, description="The published version's heldOut scores, measured again beside the candidate.",
    )


class CandidateVersion(SpecModel):
    """An exported version the gate held back: on storage, not served. Annotate the MergedModel
    evomerge.dev/promote=<version> to publish it anyway."""

    version: int
    output_uri: str
    output_sha256: str | None = Field(default=None, description="Content hash of its checkpoint, read back after it was written.")
    recipe: dict[str, Any] = Field(default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    scores: Scores = Field(default_factory=Scores)
    lineage: list[LineageEntry] = Field(default_factory=list)


class MergedModelStatus(SpecModel):
    """What the export measured: the published version on storage, its held-out scores and the inputs' content
    hashes; with a promotion gate, also the last decision and the candidate it held back."""

    phase: Literal["Pending", "Exporting", "Ready", "Failed"] | None = None
    version: int | None = Field(default=None, description="The published version: written, scored and served.")
    output_uri: str | None = None
    output_sha256: str | None = Field(
        default=None, description="Content hash of the exported checkpoint, read back at outputUri after it was written."
    )
    recipe: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
        description="The published version's recipe (spec.recipe is the newest version's, promoted or not).",
    )
    scores: Scores = Field(default_factory=Scores)
    lineage: list[LineageEntry] = Field(default_factory=list, description="Inputs of the exported version, with content hashes.")
    promotion: PromotionDecision | None = None
    candidate: CandidateVersion | None = Field(default=None, description="The newest version, when the gate held it back.")
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
