"""How a search's candidates are placed on evaluation workers: many to one process or one server start, or
one per server start — facts of the spec and the engine's catalogue entry, read by the renderers of
evaluation pods, the pod's scorer and the memory plan alike. Torch-free.
"""

from __future__ import annotations

from ..catalogue.engines import ENGINES
from ..merge.adapter_rules import adapter_servable
from ..models.uris import parse_uri
from ..spec.merge_search import MergeSearchSpec

SERVED_BASE_SCHEMES = ("pvc", "file", "hf")  # where a server reads the base from by itself


def serves_adapter(spec: MergeSearchSpec) -> bool:
    """Whether the search's server pods load the base once and host each candidate as a LoRA adapter."""
    return (ENGINES[spec.evaluation.engine].hosts_adapters and adapter_servable(spec) and spec.base_model is not None
            and parse_uri(spec.base_model.uri).scheme in SERVED_BASE_SCHEMES)


def swaps_in_pod(spec: MergeSearchSpec) -> bool:
    """Whether the search's server pods take candidate after candidate in place: a served engine that reloads
    weights, serving merged checkpoints of one shape (not adapters, not data-flow paths of changing depth)."""
    entry = ENGINES[spec.evaluation.engine]
    return entry.served and entry.swaps_in_place and not serves_adapter(spec) and not spec.merge.data_flow.enabled


def asks_for_work(spec: MergeSearchSpec) -> bool:
    """Whether the search's evaluation pods live for the whole epoch, asking the controller for candidate after
    candidate: async mode, where one server start can serve any number of candidates (swaps_in_pod)."""
    return spec.search.mode == "async" and swaps_in_pod(spec)


def candidates_per_pod(spec: MergeSearchSpec) -> int:
    """The most candidates one evaluation pod scores: evaluation.candidatesPerJob where one process (transformers)
    or one server start (swaps_in_pod) takes them all, else one."""
    return spec.evaluation.candidates_per_job if swaps_in_pod(spec) or not ENGINES[spec.evaluation.engine].served else 1
