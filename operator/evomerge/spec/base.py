"""Building blocks shared by every resource type; how a field is written on the wire (camelCase, numbers as
strings) is the catalogue's `wire`, whose SpecModel and Number the resource types read from here."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from ..catalogue.uris import URI_FIX, URI_PATTERN
from ..catalogue.wire import Number, SpecModel, format_number  # noqa: F401  (re-exported to the spec's types)

API_GROUP = "evomerge.dev"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"

# A resource's name is a DNS label: it goes into its children's names and label values (63 characters at
# most, no dots); the CRDs check it at admission from these two facts.
NAME_MAX_LENGTH = 63
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

K8sName = Annotated[
    str,
    Field(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN),
]


def uri_field(**kwargs: Any) -> Any:
    """A model URI: its scheme is checked at admission (the operator reads no other); the rest only a pod can."""
    return Field(min_length=1, max_length=2048, json_schema_extra={"x-kubernetes-validations": [
        {"rule": f"self.matches(r'{URI_PATTERN}')", "message": f"unknown URI scheme — {URI_FIX}"}]}, **kwargs)


class ObjectMeta(BaseModel):
    """The part of Kubernetes metadata evomerge reads; the rest passes through untouched."""

    model_config = ConfigDict(extra="allow")

    name: K8sName
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Condition(SpecModel):
    """A standard Kubernetes condition (metav1.Condition), read by kubectl wait, Argo CD and Flux."""

    type: str
    status: str = Field(pattern="^(True|False|Unknown)$")
    reason: str = Field(default="Unknown", pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


def conditions_field() -> Any:
    """A status list of conditions, keyed by type as metav1.Condition lists are (one entry per type)."""
    return Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="Ready, Progressing and Degraded, and kstatus' Reconciling and Stalled (derived from them, for Flux and "
                    "helm --wait), with reason, message and observedGeneration.",
    )


# A Kubernetes quantity as the core API writes it ("2", "500m", "16Gi", 1e3), without a sign: a pod's requests
# and limits are never negative. The CRD checks it as the API server's own int-or-string quantities do.
QUANTITY_PATTERN = (r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|"
                    r"(\.[0-9]+))))?$")


def _quantity(value: int | str) -> int | str:
    if isinstance(value, int) and value < 0 or isinstance(value, str) and not re.match(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity — write a count such as \"2\" or \"500m\", "
                         "or a size such as \"16Gi\"")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_quantity),
    WithJsonSchema({"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}],
                    "pattern": QUANTITY_PATTERN, "maxLength": 64,
                    "x-kubernetes-validations": [{"rule": "type(self) != int || self >= 0", "message": "must not be negative"}]}),
]


class ResourceRequirements(SpecModel):
    """Container resources as Kubernetes quantities ("2", "16Gi", "nvidia.com/gpu": "1")."""

    requests: dict[str, Quantity] = Field(default_factory=dict, max_length=16,
                                          description="Resource name → quantity the pod is scheduled with.")
    limits: dict[str, Quantity] = Field(default_factory=dict, max_length=16,
                                        description="Resource name → quantity the container may use at most.")


# Label values (nodeSelector's, say): 63 characters at most, alphanumerics with -, _ or . inside.
LabelValue = Annotated[str, Field(max_length=63, pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")]
LABEL_KEY_PATTERN = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                     r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def labels_field(description: str) -> Any:
    """A map of label keys to label values, checked at admission as the API server checks labels."""
    return Field(
        default_factory=dict, max_length=64, description=description,
        json_schema_extra={"x-kubernetes-validations": [{
            "rule": f"self.all(k, size(k) <= 317 && k.matches(r'{LABEL_KEY_PATTERN}'))",
            "message": "keys must be label keys: an optional DNS prefix and '/', then at most 63 alphanumerics, '-', '_' or '.'",
        }]},
    )


class Toleration(SpecModel):
    key: str | None = None
    """The taint key tolerated; empty with Exists: every taint."""
    operator: str | None = Field(default=None, pattern="^(Exists|Equal)$")
    """Exists or Equal (the default)."""
    value: str | None = None
    """The taint value tolerated (with Equal)."""
    effect: str | None = Field(default=None, pattern="^(NoSchedule|PreferNoSchedule|NoExecute)$")
    """NoSchedule, PreferNoSchedule or NoExecute; empty: all."""
    toleration_seconds: int | None = None
    """How long a NoExecute taint is tolerated before eviction; unset: forever."""


class LabelSelectorRequirement(SpecModel):
    key: str
    """The label key the requirement is about."""
    operator: str = Field(pattern="^(In|NotIn|Exists|DoesNotExist)$")
    """In, NotIn, Exists or DoesNotExist."""
    values: list[str] = Field(default_factory=list)
    """The values In and NotIn compare with; empty for Exists and DoesNotExist."""


class LabelSelector(SpecModel):
    match_labels: dict[str, str] = Field(default_factory=dict)
    """Labels an Expert must carry, each with exactly this value."""
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)
    """Label requirements that must all hold."""

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
            if req.operator == "In" and labels.get(req.key) not in req.values:
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
        return True
