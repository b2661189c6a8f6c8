"""The resource types — MergeSearch, MergedModel, Expert — and the one place their rules live."""

from .base import API_GROUP, API_VERSION, GROUP_VERSION, Condition, ObjectMeta, format_number
from .expert import Expert, ExpertSpec, ExpertStatus
from .loading import SpecError, load_resource, validate_document
from .merge_search import (
    ExpertSource,
    GenerationSummary,
    MergeSearch,
    MergeSearchSpec,
    MergeSearchStatus,
    MergeSpec,
    ModelSource,
    Objective,
    ScoredCandidate,
    SearchSpec,
)
from .merged_model import MergedModel, MergedModelSpec, MergedModelStatus

__all__ = [
    "API_GROUP", "API_VERSION", "GROUP_VERSION", "Condition", "ObjectMeta", "format_number",
    "Expert", "ExpertSpec", "ExpertStatus", "SpecError", "load_resource", "validate_document",
    "ExpertSource", "GenerationSummary", "MergeSearch", "MergeSearchSpec", "MergeSearchStatus", "MergeSpec",
    "ModelSource", "Objective", "ScoredCandidate", "SearchSpec",
    "MergedModel", "MergedModelSpec", "MergedModelStatus",
]
