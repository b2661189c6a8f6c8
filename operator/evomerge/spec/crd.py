"""CustomResourceDefinitions rendered from the spec types, so the API server validates what pydantic does."""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel

from ..catalogue.algorithms import (
    ALGORITHMS, DEFAULT_ALGORITHM, MODES, Algorithm, budget_defaults, mode_refusal, objectives_refusal, refine_refusal,
)
from ..catalogue.methods import BASELESS_METHODS, GENE_DECLARATIONS, GENES, METHODS, Gene
from .base import API_GROUP, API_VERSION, NAME_MAX_LENGTH, NAME_PATTERN, format_number
from .expert import Expert, ExpertSpec, ExpertStatus
from .merge_search import (
    GUARDED_NEEDS_GATE, GUARDED_NOT_HELD_OUT, KEPT_OUTPUT_FIX, KEPT_OUTPUT_PATTERN, MERGEKIT_NO_LORA, REFINE_OVER_BUDGET,
    PROMOTION_NEEDS_HELD_OUT, MergeSearch,
    MergeSearchSpec, MergeSearchStatus, MergeSpec, SearchSpec, evolve_refusal, one_expert_refusal,
)
from .merged_model import MergedModel, MergedModelSpec, MergedModelStatus


def _cel_list(values) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _search_field(field: str, default: str) -> str:
    """search.<field> as the search will read it: as set, else `default` (a CEL expression; the CRD fills in none)."""
    return f"(has(self.search.{field}) ? self.search.{field} : {default})"


def _budget_field(field: str) -> str:
    """A budget field as the search will read it: as set, else its algorithm's default."""
    algorithm = _search_field("algorithm", f"'{DEFAULT_ALGORITHM}'")
    special, others = budget_defaults(field)
    default = str(others)
    for name, value in special:
        default = f"({algorithm} == '{name}' ? {value} : {default})"
    return _search_field(field, default)


_REFINE_UNSET = "!has(self.search) || !has(self.search.refine)"


# Admission rules the schema cannot express; the same rules live in the pydantic validators. Lists they
# walk are bounded (maxItems) so the API server can bound their cost.
def _bounds_rule(gene: str) -> dict[str, str]:
    bounds = f"self.merge.bounds.{gene}"
    return {
        "rule": f"!has(self.merge) || !has(self.merge.bounds) || !has({bounds}) || double({bounds}[0]) < double({bounds}[1])",
        "message": f"merge.bounds.{gene}: the low bound must be below the high bound",
    }


def _domain_rule(gene: Gene) -> dict[str, str]:
    bounds = f"self.merge.bounds.{gene.name}"
    assert gene.domain is not None
    low, high = gene.domain
    return {
        "rule": f"!has(self.merge) || !has(self.merge.bounds) || !has({bounds}) || "
        f"(double({bounds}[0]) > {low!r} && double({bounds}[1]) <= {high!r})",
        "message": gene.domain_refusal(f"merge.bounds.{gene.name}"),
    }


def _options_rules(algorithm: Algorithm) -> list[dict[str, str]]:
    """The rules of `algorithm`'s options block (search.<name>), checked when that algorithm runs and the block is set."""
    assert algorithm.options is not None
    search, name = "self.search", algorithm.name
    other = (f"(has({search}.algorithm) && {search}.algorithm != '{name}')" if name == DEFAULT_ALGORITHM
             else f"!has({search}.algorithm) || {search}.algorithm != '{name}'")
    values = {
        "options": f"{search}.{name}",
        "mode": _search_field("mode", f"'{SearchSpec.model_fields['mode'].default}'"),
        "population_size": _search_field("populationSize", str(algorithm.budget.population_size)),
    }
    return [{"rule": f"!has({search}) || {other} || !has({search}.{name}) || {rule.cel.format(**values)}",
             "message": rule.message, "fieldPath": f".search.{name}.{rule.field}"}
            for rule in algorithm.options.rules]


# A path search (dataFlow.enabled) reads no method: the method's own rules do not apply to it.
_DATA_FLOW = "(has(self.merge) && has(self.merge.dataFlow) && has(self.merge.dataFlow.enabled) && self.merge.dataFlow.enabled)"
_ONE_EXPERT = _cel_list(m.name for m in METHODS.values() if m.one_expert)
_PROMOTION = "self.storage.output.promotion"
_PROMOTION_UNSET = f"!has(self.storage) || !has(self.storage.output) || !has({_PROMOTION})"
_HAS_HELD_OUT = "(has(self.heldOut) && size(self.heldOut) > 0)"

MERGE_SEARCH_RULES = [
    {
        "rule": f"(has(self.experts) && size(self.experts) >= 2) || has(self.expertSelector) || {_DATA_FLOW} || "
        f"(has(self.merge) && has(self.merge.method) && self.merge.method in {_ONE_EXPERT} && has(self.experts) && "
        "size(self.experts) == 1)",
        "message": "list at least two experts, or set expertSelector "
        f"({', '.join(m.name for m in METHODS.values() if m.one_expert)}: exactly one expert)",
    },
    *(
        {
            # evolve's default ([weight]) is not filled in by the API server (list defaults are dropped), so read it here
            "rule": f"!has(self.merge) || !has(self.merge.method) || self.merge.method != '{m.name}' || {_DATA_FLOW} || "
            f"(has(self.merge.evolve) ? self.merge.evolve : {_cel_list(MergeSpec().evolve)}).all(g, g in {_cel_list(m.genes)})",
            "message": evolve_refusal(m),
            "fieldPath": ".merge.evolve",
        }
        for m in METHODS.values()
        if set(m.genes) != set(GENES)
    ),
    {
        "rule": f"(has(self.merge) && has(self.merge.method) && self.merge.method in {_cel_list(BASELESS_METHODS)}) || "
        "has(self.baseModel) || "
        "(has(self.merge) && has(self.merge.dataFlow) && has(self.merge.dataFlow.enabled) && self.merge.dataFlow.enabled)",
        "message": "this merge method merges task vectors and needs baseModel (a data-flow search needs none)",
    },
    *(
        {
            "rule": f"!has(self.merge) || !has(self.merge.method) || self.merge.method != '{m.name}' || {_DATA_FLOW} || "
            "has(self.expertSelector) || (has(self.experts) && size(self.experts) == 1)",
            "message": one_expert_refusal(m),
        }
        for m in METHODS.values()
        if m.one_expert
    ),
    {
        "rule": "!has(self.merge) || !has(self.merge.layerGroups) || self.merge.layerGroups == 1 || "
        "(has(self.merge.granularity) && self.merge.granularity == 'layerGroups')",
        "message": "merge.layerGroups is only read with granularity layerGroups",
    },
    *(
        {
            "rule": f"!has(self.search) || !has(self.search.algorithm) || self.search.algorithm != '{a.name}' || "
            f"!has(self.search.mode) || self.search.mode in {_cel_list(a.modes)}",
            "message": mode_refusal(a, mode),
            "fieldPath": ".search.mode",
        }
        for a in ALGORITHMS.values()
        for mode in MODES
        if mode not in a.modes
    ),
    *(
        {
            "rule": f"!has(self.search) || !has(self.search.algorithm) || self.search.algorithm != '{a.name}' || "
            f"size(self.objectives) >= {a.min_objectives}",
            "message": objectives_refusal(a),
            "fieldPath": ".objectives",
        }
        for a in ALGORITHMS.values()
        if a.min_objectives > 1
    ),
    *(rule for a in ALGORITHMS.values() if a.options for rule in _options_rules(a)),
    {
        "rule": f"{_REFINE_UNSET} || (self.search.refine.evaluations < "
        f"{_budget_field('populationSize')} * {_budget_field('maxGenerations')} * {_budget_field('rounds')} && "
        "(!has(self.search.maxEvaluations) || self.search.refine.evaluations < self.search.maxEvaluations))",
        "message": REFINE_OVER_BUDGET,
        "fieldPath": ".search.refine.evaluations",
    },
    *(
        {
            "rule": f"{_REFINE_UNSET} || !has(self.search.algorithm) || self.search.algorithm != '{a.name}'",
            "message": refine_refusal(a),
            "fieldPath": ".search.refine",
        }
        for a in ALGORITHMS.values()
        if a.multi_objective
    ),
    *(_bounds_rule(gene) for gene in GENES),
    *(_domain_rule(gene) for gene in GENE_DECLARATIONS.values() if gene.domain is not None),
    {
        "rule": "!has(self.storage) || !has(self.storage.output) || !has(self.storage.output.exporter) || "
        "self.storage.output.exporter != 'mergekit' || !has(self.experts) || "
        "self.experts.all(e, !has(e.format) || e.format != 'lora')",
        "message": f"storage.output.exporter: {MERGEKIT_NO_LORA}",
    },
    {
        "rule": "!has(self.merge) || !has(self.merge.dataFlow) || !has(self.merge.dataFlow.scaleBounds) || "
        "(double(self.merge.dataFlow.scaleBounds[0]) > 0.0 && "
        "double(self.merge.dataFlow.scaleBounds[0]) < double(self.merge.dataFlow.scaleBounds[1]))",
        "fieldPath": ".merge.dataFlow.scaleBounds",
        "message": "merge.dataFlow.scaleBounds: [low, high] must be positive and ordered (0 < low < high) — a hop scale "
        "multiplies the residual stream, and norms are invariant only to positive factors",
    },
    {
        "rule": f"!has(self.storage) || !has(self.storage.output) || self.storage.output.uri.matches('{KEPT_OUTPUT_PATTERN}')",
        "fieldPath": ".storage.output.uri",
        "message": f"storage.output.uri: {KEPT_OUTPUT_FIX}",
    },
    {
        "rule": f"{_PROMOTION_UNSET} || !has({_PROMOTION}.policy) || {_PROMOTION}.policy != 'gated' || {_HAS_HELD_OUT}",
        "message": PROMOTION_NEEDS_HELD_OUT,
        "fieldPath": ".storage.output.promotion.policy",
    },
    {
        "rule": f"{_PROMOTION_UNSET} || !has({_PROMOTION}.guarded) || size({_PROMOTION}.guarded) == 0 || "
        f"(has({_PROMOTION}.policy) ? {_PROMOTION}.policy == 'gated' : {_HAS_HELD_OUT})",
        "message": GUARDED_NEEDS_GATE,
        "fieldPath": ".storage.output.promotion.guarded",
    },
    {
        "rule": f"{_PROMOTION_UNSET} || !has({_PROMOTION}.guarded) || {_PROMOTION}.guarded.all(g, has(self.heldOut) && "
        "self.heldOut.exists(h, h.task == g.task && h.metric == g.metric))",
        "message": GUARDED_NOT_HELD_OUT,
        "fieldPath": ".storage.output.promotion.guarded",
    },
]

MERGED_MODEL_RULES = [
    {
        "rule": f"self.outputUri.matches('{KEPT_OUTPUT_PATTERN}')",
        "fieldPath": ".outputUri",
        "message": f"outputUri: {KEPT_OUTPUT_FIX}",
    },
]

# kubectl get's columns: (name, type, JSONPath[, description[, priority: 1 shows under -o wide only]])
_READY_REASON = '.status.conditions[?(@.type=="Ready")].reason'
_READY_MESSAGE = '.status.conditions[?(@.type=="Ready")].message'

KINDS: dict[str, dict[str, Any]] = {
    "MergeSearch": {
        "plural": "mergesearches",
        "singular": "mergesearch",
        "short": ["ms"],
        "resource": MergeSearch,
        "spec": MergeSearchSpec,
        "status": MergeSearchStatus,
        "rules": MERGE_SEARCH_RULES,
        "columns": [
            ("Phase", "string", ".status.phase"),
            ("Epoch", "integer", ".status.epoch", "Runs of this search: a changed spec or expert set starts the next."),
            ("Round", "integer", ".status.epochRound", "The round the current epoch runs (at most spec.search.rounds)."),
            ("Generation", "integer", ".status.epochGeneration", "Generations the current epoch has run."),
            ("Evaluations", "integer", ".status.evaluations"),
            ("Queued", "integer", ".status.queuedEvaluations", "Evaluation Jobs waiting for Kueue to admit them.", 1),
            ("Best", "string", ".status.best.value", "The best score in its objective's own direction."),
            ("Reason", "string", _READY_REASON),
            ("Age", "date", ".metadata.creationTimestamp"),
            ("Message", "string", _READY_MESSAGE, "What the Ready condition says.", 1),
        ],
    },
    "MergedModel": {
        "plural": "mergedmodels",
        "singular": "mergedmodel",
        "short": ["mm"],
        "resource": MergedModel,
        "spec": MergedModelSpec,
        "status": MergedModelStatus,
        "rules": MERGED_MODEL_RULES,
        "columns": [
            ("Version", "integer", ".spec.version"),
            ("Published", "integer", ".status.version"),
            ("Candidate", "integer", ".status.candidate.version"),
            ("Phase", "string", ".status.phase"),
            ("Output", "string", ".status.outputUri"),
            ("Reason", "string", _READY_REASON),
            ("Age", "date", ".metadata.creationTimestamp"),
            ("Message", "string", _READY_MESSAGE, "What the Ready condition says.", 1),
        ],
    },
    "Expert": {
        "plural": "experts",
        "singular": "expert",
        "short": ["ex"],
        "resource": Expert,
        "spec": ExpertSpec,
        "status": ExpertStatus,
        "rules": [],
        "columns": [
            ("Format", "string", ".spec.format"),
            ("Compatible", "boolean", ".status.compatible"),
            ("Reason", "string", ".status.reason"),
            ("URI", "string", ".spec.uri"),
            ("Age", "date", ".metadata.creationTimestamp"),
        ],
    },
}

# pydantic writes a bound of a Number inside an optional (Number | None) as gt/ge/lt/le, which are not OpenAPI
# keywords (the API server refuses them); _number_rules checks such bounds with CEL instead.
_DROPPED_KEYS = {"title", "$defs", "gt", "ge", "lt", "le"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Rewrite pydantic's JSON Schema into the structural OpenAPI v3 subset Kubernetes accepts."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            if rest.get("default", 0) is None:
                rest.pop("default")
            return _structural({**options[0], **rest}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "prefixItems":
            out["items"] = _structural(value[0], defs)
            out["minItems"] = out["maxItems"] = len(value)
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
            continue
        if key == "default" and isinstance(value, (dict, list)):
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
            continue
        out[key] = _structural(value, defs)
    if out.get("additionalProperties") is True:
        # "any value" in JSON Schema; the API server would still prune inside nested objects and lists
        del out["additionalProperties"]
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="serialization")
    structural = _structural(schema, schema.get("$defs", {}))
    _number_rules(model, structural)
    return structural


_COMPARISONS = ((Gt, "gt", ">", "greater than"), (Ge, "ge", ">=", "at least"), (Lt, "lt", "<", "less than"),
                (Le, "le", "<=", "at most"))


def _number_rules(model: type[BaseModel], schema: dict[str, Any]) -> None:
    """A CEL rule on every Number property with bounds (ge, gt, le, lt on the spec type): the schema writes
    numbers as strings, so only a rule tells the API server their range."""
    properties = schema.get("properties") or {}
    for name, info in model.model_fields.items():
        prop = properties.get(info.alias or name)
        if prop is None:
            continue
        bounds = [(op, float(getattr(m, attr)), words) for m in info.metadata
                  for kind, attr, op, words in _COMPARISONS if isinstance(m, kind)]
        if bounds and prop.get("type") == "string" and float in _members(info.annotation):
            prop["x-kubernetes-validations"] = [{
                "rule": " && ".join(f"double(self) {op} {value!r}" for op, value, _ in bounds),
                "message": "must be " + " and ".join(f"{words} {format_number(value)}" for _, value, words in bounds),
            }]
        for member in _members(info.annotation):
            if isinstance(member, type) and issubclass(member, BaseModel):
                _number_rules(member, prop.get("items", prop) if prop.get("type") == "array" else prop)


def _members(annotation: Any) -> list[Any]:
    """The types an annotation is made of: X | None gives X, list[X] gives X, Annotated[X, ...] gives X."""
    if get_origin(annotation) in (Union, types.UnionType, list):
        return [m for arg in get_args(annotation) for m in _members(arg)]
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    return [annotation]


def render_crd(kind: str) -> dict[str, Any]:
    info = KINDS[kind]
    spec_schema = openapi_schema(info["spec"])
    name_rules = [
        {"rule": f"size(self.metadata.name) <= {NAME_MAX_LENGTH}",
         "message": f"metadata.name: at most {NAME_MAX_LENGTH} characters — it goes into the label values of every "
                    "Job and pod made for it"},
        {"rule": f"self.metadata.name.matches('{NAME_PATTERN}')",
         "message": "metadata.name: lowercase letters, digits and '-' only, no dots — it names Jobs, ConfigMaps and "
                    "Services and goes into their labels"},
    ]
    if info["rules"]:
        spec_schema["x-kubernetes-validations"] = info["rules"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{info['plural']}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": info["plural"],
                "singular": info["singular"],
                "shortNames": info["short"],
                "categories": ["evomerge"],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [_column(*column) for column in info["columns"]],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-validations": name_rules,
                            "description": (info["resource"].__doc__ or kind).strip().splitlines()[0],
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": openapi_schema(info["status"]),
                            },
                        }
                    },
                }
            ],
        },
    }


def _column(name: str, type_: str, path: str, description: str | None = None, priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if description:
        column["description"] = description
    if priority:
        column["priority"] = priority
    return column


def crd_file_name(kind: str) -> str:
    return f"{KINDS[kind]['plural']}.{API_GROUP}.yaml"
