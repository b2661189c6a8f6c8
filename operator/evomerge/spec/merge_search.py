"""MergeSearch: the one description of a search, read by `evomerge run`, the operator and the CRD."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, create_model, model_validator
from pydantic.alias_generators import to_snake

from ..catalogue.algorithms import (
    ALGORITHM_NAMES, ALGORITHMS, ASYNC_ALGORITHMS, DEFAULT_ALGORITHM, MODES, ONE_LONG_ROUND, OPTIONS, budget_defaults,
    mode_refusal, objectives_refusal, refine_refusal,
)
from ..catalogue.engines import DEFAULT_ENGINE, EngineName as Engine
from ..catalogue.methods import (
    BASELESS_METHODS, DEFAULT_METHOD, GENE_DECLARATIONS, GENES, METHOD_NAMES, METHODS, Method,
    methods_with,
)
from .base import (
    GROUP_VERSION,
    Condition,
    LabelSelector,
    LabelValue,
    Number,
    ObjectMeta,
    Quantity,
    ResourceRequirements,
    SpecModel,
    Toleration,
    conditions_field,
    labels_field,
    uri_field,
)

MergeMethod = Literal[METHOD_NAMES]  # type: ignore[valid-type]  # the catalogue's methods
Granularity = Literal["model", "layerGroups", "layers"]
Gene = Literal[GENES]  # type: ignore[valid-type]
Algorithm = Literal[ALGORITHM_NAMES]  # type: ignore[valid-type]  # the catalogue's algorithms
SearchMode = Literal[MODES]  # type: ignore[valid-type]
Phase = Literal["Pending", "Queued", "Running", "Succeeded", "Failed", "Suspended"]

class ModelSource(SpecModel):
    """Where a checkpoint lives: hf://org/name, file:///abs/path (or a plain path), pvc://claim/path, s3://bucket/key."""

    uri: str = uri_field()
    """Where the checkpoint lives: hf://org/name, file:///abs/path (or a plain path), pvc://claim/path or
    s3://bucket/key."""
    revision: str | None = None
    """The hub revision (branch, tag or commit) to read; unset: the repository's default."""


class ExpertSource(ModelSource):
    """A fine-tuned checkpoint (full weights or a LoRA adapter) of the base model."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")]
    """The expert's name in recipes, reports and the genome; unique within the search."""
    format: Literal["full", "lora"] = "full"
    """full: fine-tuned weights; lora: a PEFT adapter, merged as a task vector over baseModel."""


class _GeneBoxes(SpecModel):
    """What every merge.bounds shares: each gene's box is ordered and lies within the gene's domain."""

    @model_validator(mode="after")
    def _ordered(self) -> "_GeneBoxes":
        for name, gene in GENE_DECLARATIONS.items():
            low, high = getattr(self, name)
            if not low < high:
                raise ValueError(f"bounds.{name}: low ({low}) must be below high ({high})")
            if gene.domain is not None and not (gene.domain[0] < low and high <= gene.domain[1]):
                raise ValueError(gene.domain_refusal(f"bounds.{name}"))
        return self

    def by_gene(self) -> dict[str, tuple[float, float]]:
        return {name: tuple(getattr(self, name)) for name in GENE_DECLARATIONS}  # type: ignore[misc]


# One field per gene of the catalogue, so a manifest writes merge.bounds.density: [0.2, 0.9].
Bounds = create_model(
    "Bounds",
    __base__=_GeneBoxes,
    __doc__="Search box per evolved parameter, as [low, high].",
    __module__=__name__,
    **{name: (tuple[Number, Number], Field(default=gene.bounds, description=gene.description))
       for name, gene in GENE_DECLARATIONS.items()},
)


MODEL_A = "modelA"  # the path's name for dataFlow.modelA
DEFAULT_SCALE_BOUNDS = (0.5, 2.0)


class DataFlowSpec(SpecModel):
    """Sakana's data-flow (layer path) merging: which layer runs at each of M×r slots, with per-hop scaling.

    The path runs over model A, then the experts in list order; A supplies the embeddings, the head and the
    path's first and last layer. A is `modelA` when set (for instance an exported parameter-space merge:
    PS + DFS), else the first expert. The search then evolves the path alone: merge.method, evolve, bounds
    and granularity are not read.
    """

    enabled: bool = False
    """Search a layer path over the experts (and modelA) instead of mixing their parameters."""
    repeats: int = Field(default=3, ge=1, le=16, description="r: the layers of all path models are laid out r times.")
    evolve_scales: bool = Field(default=True, description="Evolve one input scale per slot; false: every hop has scale 1.")
    scale_bounds: tuple[Number, Number] = Field(
        default=DEFAULT_SCALE_BOUNDS, description="[low, high] of the evolved hop scales; both positive."
    )
    model_a: ModelSource | None = Field(
        default=None, description="Model A of the path (embeddings, head, first and last layer); unset: the first expert."
    )

    @model_validator(mode="after")
    def _positive_scales(self) -> "DataFlowSpec":
        low, high = self.scale_bounds
        if not 0 < low < high:
            raise ValueError(
                f"merge.dataFlow.scaleBounds: [{low}, {high}] must be positive and ordered (low < high) — a hop scale "
                "multiplies the residual stream, and norms are invariant only to positive factors"
            )
        return self


def evolve_refusal(method: Method) -> str:
    """Why merge.evolve does not fit `method`: what it evolves, and which methods have the other genes."""
    others = "; ".join(f"{gene} applies to {', '.join(methods_with(gene))}" for gene in GENES if gene not in method.genes)
    return (f"merge.evolve: method {method.name} evolves {' and '.join(method.genes)} only — remove the others from "
            f"evolve, or change merge.method ({others})")


def one_expert_refusal(method: Method) -> str:
    return (f"experts: {method.name} interpolates between baseModel and exactly one expert — list one, or select one "
            "with expertSelector")


class MergeSpec(SpecModel):
    method: MergeMethod = DEFAULT_METHOD
    """The merge method, computed with mergekit's formulas."""
    granularity: Granularity = "model"
    """model: one parameter set for the whole model; layerGroups: one per group of blocks; layers: one per block."""
    layer_groups: int = Field(default=1, ge=1, le=1024, description="Contiguous block groups when granularity is layerGroups.")
    split_modules: bool = Field(default=False, description="Separate parameters for attention and MLP tensors.")
    evolve: list[Gene] = Field(
        default_factory=lambda: ["weight"], min_length=1, max_length=len(GENES), json_schema_extra={"x-kubernetes-list-type": "set"},
        description=f"The method's parameters the search evolves ({', '.join(GENES)}); the rest keep the method's defaults.",
    )
    bounds: Bounds = Field(default_factory=Bounds)
    """[low, high] of each evolved parameter."""
    normalize: bool | None = Field(default=None, description="Divide by the sum of weights; unset means the method's mergekit default.")
    lambda_: Number = Field(default=1.0, alias="lambda", description="Scale of the merged task vector.")
    rescale: bool | None = None
    """DARE's rescaling of the kept entries by 1/density; unset means mergekit's default."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Precision the merge is computed in; auto: the base model's."""
    data_flow: DataFlowSpec = Field(default_factory=DataFlowSpec)
    """Data-flow (layer path) merging instead of parameter mixing."""

    @model_validator(mode="after")
    def _genes_fit_method(self) -> "MergeSpec":
        if len(set(self.evolve)) != len(self.evolve):
            raise ValueError(f"merge.evolve lists a parameter twice; list each of {', '.join(GENES)} at most once")
        if self.data_flow.enabled:  # a path search reads neither the method nor its genes
            return self
        if any(gene not in METHODS[self.method].genes for gene in self.evolve):
            raise ValueError(evolve_refusal(METHODS[self.method]))
        if self.granularity != "layerGroups" and self.layer_groups != 1:
            raise ValueError("merge.layerGroups is only read with granularity: layerGroups")
        return self


class EarlyStopping(SpecModel):
    patience: int = Field(default=5, ge=1, description="Generations without an improvement above minDelta before stopping.")
    min_delta: Number = Field(default=0.0, ge=0)
    """The least rise of the best fitness that counts as an improvement; at least 0."""


class RefineSpec(SpecModel):
    """A local search around the best merge once the search proper has stopped: small Gaussian steps (a (1+λ)-ES,
    λ = evaluation.parallelism) whose step size follows the 1/5th success rule. Its evaluations come out of the
    search's budget, and the report shows what it gained."""

    evaluations: int = Field(
        ge=1, le=100000,
        description="Candidates the refinement evaluates, taken from the search's budget (maxEvaluations, else "
        "populationSize × maxGenerations × rounds): the search proper stops that many earlier.",
    )
    step_size: Number = Field(
        default=0.05, gt=0, le=0.5, description="The first step's σ, as a fraction of each gene's bounds."
    )


class SeedRecipe(SpecModel):
    """A known merge that joins the first population: a mergekit config inline, or where its YAML lies."""

    mergekit: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
        description="A mergekit configuration (merge_method, base_model, models or slices, parameters).",
    )
    uri: str | None = Field(
        default=None,
        description="A mergekit YAML: a path or file:// URI (`evomerge run`), or pvc://claim/path (the controller mounts the claim).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> "SeedRecipe":
        if (self.mergekit is None) == (self.uri is None):
            raise ValueError("a seed sets exactly one of mergekit (inline config) or uri (a mergekit YAML file)")
        scheme = (self.uri or "").partition("://")[0]
        if scheme in ("hf", "s3"):  # refused here so that the operator reports it before any Job runs
            raise ValueError(
                f"uri: {scheme}:// seeds are not fetched — put the YAML on a volume claim (pvc://claim/path) or a "
                "local path, or give it inline under mergekit"
            )
        return self


REFINE_OVER_BUDGET = ("search.refine.evaluations: the refinement's evaluations come out of the search's budget "
                      "(maxEvaluations, else populationSize × maxGenerations × rounds) and must leave some for the search "
                      "itself — lower it, or raise the budget")


def _budget_defaults(field: str) -> str:
    """'20 for evogm, 8 for the others', from the catalogue's budgets."""
    special, others = budget_defaults(field)
    if not special:
        return f"{others} for every algorithm"
    return ", ".join([*(f"{value} for {name}" for name, value in special), f"{others} for the others"])


def _unset_in_crd(schema: dict[str, Any]) -> None:
    """The default depends on the algorithm, so the API server must not fill one in at admission."""
    schema.pop("default", None)


class _SearchCore(SpecModel):  # search's own fields; SearchSpec adds every algorithm's options block after them
    algorithm: Algorithm = Field(
        default=DEFAULT_ALGORITHM, description="; ".join(f"{a.name}: {a.summary}" for a in ALGORITHMS.values()) + "."
    )
    population_size: int = Field(
        default=ONE_LONG_ROUND.population_size, ge=2, le=4096, json_schema_extra=_unset_in_crd,
        description=f"Candidates per generation. Unset: {_budget_defaults('populationSize')}.",
    )
    max_generations: int = Field(
        default=ONE_LONG_ROUND.max_generations, ge=1, le=100000, json_schema_extra=_unset_in_crd,
        description="Generations per round, the initial population included (EvoGM: 1 + iterations per round). "
        f"Unset: {_budget_defaults('maxGenerations')}.",
    )
    rounds: int = Field(
        default=ONE_LONG_ROUND.rounds, ge=1, le=100, json_schema_extra=_unset_in_crd,
        description="EvoGM rounds: the top candidates of a round become the experts of the next. Other algorithms run "
        f"rounds × maxGenerations generations. Unset: {_budget_defaults('rounds')}.",
    )
    seed: int = Field(default=0, ge=0)
    """Seed of the optimizer and of subsampled objectives; a search is repeatable given its seed."""
    mode: SearchMode = Field(
        default="generational",
        description=f"async: ask a new candidate as soon as any evaluation finishes ({', '.join(ASYNC_ALGORITHMS)}); a "
        "generation is then every populationSize results.",
    )
    early_stopping: EarlyStopping | None = None
    """Stop when the best fitness stops improving."""
    max_evaluations: int | None = Field(default=None, ge=1, description="Hard cap on candidates (cache hits included); the search also stops after populationSize × maxGenerations × rounds.")
    refine: RefineSpec | None = None
    """A local search around the best merge at the end, counted in the budget; unset: none."""


# search.<algorithm>: each algorithm's own options block, as its catalogue entry declares it
_SearchOptions = create_model(
    "_SearchOptions",
    __base__=_SearchCore,
    __module__=__name__,
    **{name: (options, Field(default_factory=options,
                             description=f"{ALGORITHMS[name].title}'s hyper-parameters (read when algorithm is {name})."))
       for name, options in OPTIONS.items()},
)


class SearchSpec(_SearchOptions):  # type: ignore[misc,valid-type]
    seeds: list[SeedRecipe] = Field(
        default_factory=list,
        description="mergekit recipes encoded into the genome; they join the first population, beside each expert alone "
        "and the uniform merge (every optimizer but random search starts from those).",
    )

    @model_validator(mode="before")
    @classmethod
    def _budget_defaults(cls, data: Any) -> Any:
        """Fill populationSize, maxGenerations and rounds the spec leaves out with its algorithm's defaults."""
        if not isinstance(data, dict):
            return data
        algorithm = ALGORITHMS.get(data.get("algorithm", DEFAULT_ALGORITHM))
        if algorithm is None:
            return data  # the algorithm's own validation names the field
        filled = dict(data)
        for camel, value in algorithm.budget.fields().items():
            if camel not in filled and to_snake(camel) not in filled:
                filled[camel] = value
        return filled

    @property
    def budget(self) -> int:
        """Candidates the search may ask in all: maxEvaluations, or populationSize × maxGenerations × rounds if fewer."""
        by_generations = self.population_size * self.max_generations * self.rounds
        return min(by_generations, self.max_evaluations) if self.max_evaluations else by_generations

    @model_validator(mode="after")
    def _refine_fits(self) -> "SearchSpec":
        if self.refine is None:
            return self
        if ALGORITHMS[self.algorithm].multi_objective:
            raise ValueError(refine_refusal(ALGORITHMS[self.algorithm]))
        if self.refine.evaluations >= self.budget:
            raise ValueError(f"{REFINE_OVER_BUDGET} (refine.evaluations is {self.refine.evaluations}, the budget "
                             f"{self.budget})")
        return self

    @model_validator(mode="after")
    def _runs_in_its_mode(self) -> "SearchSpec":
        if self.mode not in ALGORITHMS[self.algorithm].modes:
            raise ValueError(mode_refusal(ALGORITHMS[self.algorithm], self.mode))
        if self.algorithm in OPTIONS and (refusal := getattr(self, self.algorithm).refusal(self)):
            raise ValueError(refusal)
        return self


TASK_NAME_LIMIT = 256  # bounds the API server's cost estimate of the CEL rules comparing task and metric names


class Objective(SpecModel):
    """One lm-evaluation-harness task and the metric read from it."""

    task: str = Field(min_length=1, max_length=TASK_NAME_LIMIT)
    """The lm-evaluation-harness task name (or one from evaluation.includePaths)."""
    metric: str = Field(default="acc", min_length=1, max_length=TASK_NAME_LIMIT)
    """The metric the task reports that is scored (acc, exact_match, bits_per_byte, …)."""
    weight: Number = Field(default=1.0, gt=0, description="Share of this objective in the fitness (weights are normalised); above 0.")
    direction: Literal["maximize", "minimize"] = "maximize"
    """maximize or minimize the metric; the BEST column shows it in this direction."""
    limit: int | None = Field(default=None, ge=1, description="Items subsampled (seeded, fixed per search).")

    @property
    def key(self) -> str:
        return f"{self.task}/{self.metric}"


class EvaluationSpec(SpecModel):
    engine: Engine = DEFAULT_ENGINE
    """What scores candidates: transformers in the pod, or a vLLM / SGLang / TGI server beside it."""
    parallelism: int = Field(default=1, ge=1, le=1024)
    """Evaluation Jobs running at once."""
    batch_size: int = Field(default=8, ge=1, le=4096)
    """Items scored per forward pass."""
    candidates_per_job: int = Field(default=4, ge=1, le=1024)
    """Candidates one evaluation Job scores in turn: in process (transformers) or from one server start (vllm, sglang); TGI scores one per pod."""
    max_failed_evaluations: int = Field(default=10, ge=0)
    """Failed evaluations the search tolerates before it fails."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """cpu, cuda, or auto (cuda when the pod has a GPU)."""
    include_paths: list[str] = Field(default_factory=list, description="Directories of custom lm-eval task YAMLs.")
    timeout_seconds: int = Field(default=3600, ge=10)
    """The deadline of one evaluation Job, counted from its start (time queued in Kueue is free); past it, its candidates fail."""
    queue_name: str | None = Field(default=None, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """Kueue LocalQueue for every Job of the search (created suspended, run when admitted); unset: the chart's kueue.queueName."""
    image: str | None = None
    """The worker image of evaluation and export pods; unset: the operator's."""
    server_image: str | None = None
    """The vLLM or TGI image beside the scorer; unset: the pinned upstream image."""
    server_args: list[str] = Field(
        default_factory=list, max_length=64,
        description="Arguments appended to the served engine's server command line in evaluation pods, e.g. "
        "[--max-model-len, '4096', --gpu-memory-utilization, '0.85'].",
    )
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    """Requests and limits of the scorer container (and of the export)."""
    gpu_memory: Quantity | None = Field(
        default=None,
        description="Memory of one accelerator of the evaluation nodes, e.g. 80Gi. With it, the controller checks "
        "from the checkpoints' sizes that an evaluation worker fits (the README's memory plan) before any pod starts.",
    )
    node_selector: dict[str, LabelValue] = labels_field("Node labels an evaluation pod must match (the pod's nodeSelector).")
    tolerations: list[Toleration] = Field(default_factory=list)
    """Tolerations of evaluation pods, for tainted GPU nodes."""


# Objectives are keyed by task and metric: the API server refuses the same pair twice.
_BY_TASK_AND_METRIC = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["task", "metric"]}


class ModelCache(SpecModel):
    persistent_volume_claim: str = Field(min_length=1)
    """The PersistentVolumeClaim's name, in the search's namespace."""


Exporter = Literal["evomerge", "mergekit"]

# Where a cluster may write what it publishes: only a PersistentVolumeClaim outlives the pod that writes, so an
# output names a claim and a path on it. The CRDs admit nothing else and the operator checks the same pattern.
KEPT_OUTPUT_PATTERN = r"^pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?/+[^/]"
KEPT_OUTPUT_FIX = ("write pvc://<claim>/<path> — only a PersistentVolumeClaim outlives the pod that writes to it "
                   "(a file:// path lies inside the pod, and pvc:// needs both a claim and a path on it)")
MERGEKIT_NO_LORA = "mergekit exports no LoRA experts — set exporter: evomerge, or list each adapter merged into its base"


class GuardedObjective(SpecModel):
    """A heldOut objective a new version must not make worse beyond a tolerance, whatever it gains elsewhere."""

    task: str = Field(min_length=1, max_length=TASK_NAME_LIMIT)
    """The heldOut objective's task."""
    metric: str = Field(default="acc", min_length=1, max_length=TASK_NAME_LIMIT)
    """The heldOut objective's metric."""
    tolerance: Number = Field(
        default=0.0, ge=0,
        description="Largest drop allowed, in the metric's units (for a perplexity, of its logarithm, as the search "
        "weighs it); \"0\": no drop at all.",
    )

    @property
    def key(self) -> str:
        return f"{self.task}/{self.metric}"


PromotionPolicy = Literal["gated", "always"]


class PromotionSpec(SpecModel):
    """When a new best merge replaces the published MergedModel version (and the Deployment serving it).

    gated: the new best and the published version are scored on the same heldOut items, and the new one is
    published only if the weighted heldOut objective improves by at least minImprovement with a paired
    test's p-value below significance (exact McNemar for pass/fail items, a paired bootstrap otherwise), and
    no guarded objective drops by more than its tolerance. A candidate held back stays in the MergedModel's
    status; annotate the MergedModel evomerge.dev/promote=<version> to publish it anyway.
    """

    policy: PromotionPolicy | None = Field(
        default=None,
        description="gated (publish only a significant improvement) or always (publish every epoch's best). "
        "Unset: gated when heldOut lists objectives, else always.",
    )
    min_improvement: Number = Field(
        default=0.0, ge=0,
        description="Smallest gain of the weighted heldOut objective that promotes, e.g. \"0.01\" (one point of accuracy).",
    )
    significance: Number = Field(
        default=0.05, gt=0, lt=1, description="A gain promotes only if the paired test's p-value is below this."
    )
    guarded: list[GuardedObjective] = Field(
        default_factory=list, max_length=32, json_schema_extra=_BY_TASK_AND_METRIC,
        description="heldOut objectives that must not regress beyond their tolerance.",
    )


class OutputSpec(SpecModel):
    uri: str = Field(
        min_length=1, max_length=1024,
        description="Where each version is exported (<uri>/v<N>) and the report written (<uri>/report). In the "
        "cluster: pvc://<claim>/<path>; `evomerge run`: a path or file:// URI.",
    )
    exporter: Exporter = Field(
        default="evomerge",
        description="Who writes the MergedModel's checkpoint in the export Job: evomerge (its own exporter, equal to "
        "mergekit 0.1.5 and faster) or mergekit (mergekit-yaml on the card's mergekit_config.yml; dare methods then draw "
        "mergekit's random masks). mergekit takes no LoRA experts.",
    )
    compare_references: bool = Field(
        default=True,
        description="At each epoch's end, also score each expert alone and the uniform merge (search and held-out "
        "objectives, in evaluation Jobs) for the report's comparison table.",
    )
    promotion: PromotionSpec = Field(default_factory=PromotionSpec)


class StorageSpec(SpecModel):
    model_cache: ModelCache | None = None
    """A claim holding the Hugging Face cache that hf:// models resolve through."""
    output: OutputSpec | None = None
    """Where the best merge is exported as a MergedModel; unset: nothing is published."""


class MergeSearchSpec(SpecModel):
    base_model: ModelSource | None = None
    """The model the experts were tuned from; task vectors are taken against it."""
    experts: list[ExpertSource] = Field(
        default_factory=list,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """The checkpoints to merge, each with a unique name."""
    expert_selector: LabelSelector | None = Field(
        default=None, description="Also merge the Expert resources of this namespace whose labels match."
    )
    merge: MergeSpec = Field(default_factory=MergeSpec)
    """How candidates are merged: the method, what evolves and within which bounds."""
    search: SearchSpec = Field(default_factory=SearchSpec)
    """The optimizer and its budget."""
    objectives: list[Objective] = Field(min_length=1, max_length=32, json_schema_extra=_BY_TASK_AND_METRIC)
    """The lm-evaluation-harness tasks each candidate is scored on; their weighted scores are its fitness."""
    held_out: list[Objective] = Field(default_factory=list, max_length=32, json_schema_extra=_BY_TASK_AND_METRIC)
    """Tasks scored only on the final merge (not searched on), for an honest estimate."""
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    """Where and how candidates are scored: engine, parallelism, pod resources and placement."""
    storage: StorageSpec = Field(default_factory=StorageSpec)
    """The model cache the pods read from and where the best merge is published."""
    allow_pickle: bool = Field(default=False, description="Allow pickle (.bin) checkpoints; they can run code when loaded.")
    suspend: bool = Field(default=False, description="Stop the search's pods; setting it back to false resumes from the history.")

    @model_validator(mode="after")
    def _consistent(self) -> "MergeSearchSpec":
        names = [e.name for e in self.experts]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"experts: duplicate name(s) {', '.join(duplicates)} — every expert needs a unique name")
        one_expert = METHODS[self.merge.method].one_expert and not self.merge.data_flow.enabled  # a path reads no method
        if one_expert and len(self.experts) != 1 and self.expert_selector is None:
            raise ValueError(one_expert_refusal(METHODS[self.merge.method]))
        if len(self.experts) < 2 and self.expert_selector is None and not self.merge.data_flow.enabled and not one_expert:
            raise ValueError("experts: list at least two experts, or set expertSelector to pick Expert resources")
        if self.merge.data_flow.enabled:
            _check_data_flow(self)
        elif self.merge.method not in BASELESS_METHODS and self.base_model is None:
            raise ValueError(f"baseModel: merge.method {self.merge.method!r} merges task vectors and needs baseModel.uri")
        if len(self.objectives) < ALGORITHMS[self.search.algorithm].min_objectives:
            raise ValueError(objectives_refusal(ALGORITHMS[self.search.algorithm]))
        keys = [o.key for o in self.objectives]
        if len(set(keys)) != len(keys):
            raise ValueError("objectives: the same task/metric is listed twice")
        if self.storage.output is not None and self.storage.output.exporter == "mergekit":
            lora = [e.name for e in self.experts if e.format == "lora"]
            if lora:
                raise ValueError(f"storage.output.exporter: {MERGEKIT_NO_LORA} (experts {', '.join(lora)})")
        if self.storage.output is not None:
            _check_promotion(self.storage.output.promotion, self.held_out)
        return self


PROMOTION_NEEDS_HELD_OUT = ("storage.output.promotion.policy: gated compares versions on heldOut items — list heldOut "
                            "objectives, or set policy: always")
GUARDED_NEEDS_GATE = "storage.output.promotion.guarded: only a gated promotion guards objectives — set policy: gated"
GUARDED_NOT_HELD_OUT = "storage.output.promotion.guarded: every guarded task/metric must be a heldOut objective"


def _check_promotion(promotion: PromotionSpec, held_out: list[Objective]) -> None:
    if promotion.policy == "gated" and not held_out:
        raise ValueError(PROMOTION_NEEDS_HELD_OUT)
    if promotion.guarded and promotion_policy(promotion, held_out) != "gated":
        raise ValueError(GUARDED_NEEDS_GATE)
    keys = {o.key for o in held_out}
    unknown = [g.key for g in promotion.guarded if g.key not in keys]
    if unknown:
        raise ValueError(f"{GUARDED_NOT_HELD_OUT} ({', '.join(unknown)} is not; heldOut lists {', '.join(sorted(keys)) or 'none'})")


def promotion_policy(promotion: PromotionSpec, held_out: list[Objective]) -> PromotionPolicy:
    """The policy in force: as set, else gated when there are heldOut items to compare versions on."""
    return promotion.policy or ("gated" if held_out else "always")


def path_models(spec: MergeSearchSpec) -> list[tuple[str, str]]:
    """(name, uri) of a data-flow search's path models in layout order: model A first, then the experts."""
    model_a = spec.merge.data_flow.model_a
    head = [(MODEL_A, model_a.uri)] if model_a is not None else []
    return head + [(e.name, e.uri) for e in spec.experts]


def _check_data_flow(spec: MergeSearchSpec) -> None:
    """A path runs whole models' layers, so every path model is a full checkpoint with a name of its own."""
    flow = spec.merge.data_flow
    if not spec.experts and flow.model_a is None:
        raise ValueError("merge.dataFlow: a data-flow path needs a model — list experts, or set merge.dataFlow.modelA")
    for i, expert in enumerate(spec.experts):
        if expert.format == "lora":
            raise ValueError(
                f"experts[{i}].format: lora — a data-flow path runs whole layers of full checkpoints; "
                "merge the adapter into its base first and list the merged model"
            )
        if flow.model_a is not None and expert.name == MODEL_A:
            raise ValueError(f"experts[{i}].name: {MODEL_A!r} is the path's name for merge.dataFlow.modelA — rename the expert")


class GenerationSummary(SpecModel):
    round: int
    generation: int
    count: int
    failed: int = 0
    best: Number | None = None
    mean: Number | None = None
    worst: Number | None = None
    seconds: Number = 0.0


class ScoredCandidate(SpecModel):
    candidate: str = Field(description="Candidate id in the history store.")
    score: Number | None = None
    """The fitness the search maximises: the objectives' weighted scores, minimised ones negated."""
    value: Number | None = None
    """The score in its objective's own direction (kubectl's BEST): one objective's metric as measured, never
    negated; with several objectives, the fitness."""
    scores: dict[str, Number] = Field(default_factory=dict)
    """Objective (task/metric) → score as measured."""
    recipe: dict[str, Any] = Field(default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})


class MergeSearchStatus(SpecModel):
    phase: Phase | None = None
    round: int = Field(default=0, description="Rounds run so far, every epoch counted (the next epoch numbers its rounds on "
                       "from here); kubectl's ROUND column shows epochRound.")
    generation: int = Field(default=0, description="Generations run so far, every epoch counted (status.generations and "
                            "the report number them so); kubectl's GENERATION column shows epochGeneration.")
    epoch_round: int | None = Field(default=None, description="The round the current epoch runs, from 1: never more than "
                                    "spec.search.rounds, however often the spec was edited (kubectl's ROUND).")
    epoch_generation: int | None = Field(default=None, description="Generations the current epoch has run so far "
                                         "(kubectl's GENERATION).")
    evaluations: int = 0
    failed_evaluations: int = 0
    queued_evaluations: int | None = Field(
        default=None, description="Evaluation Jobs waiting for Kueue to admit them (created suspended in their "
        "LocalQueue), as the controller last saw them; evaluation.timeoutSeconds of each starts at its admission.")
    best: ScoredCandidate | None = None
    generations: list[GenerationSummary] = Field(default_factory=list, description="The most recent summaries only.")
    pareto_front: list[ScoredCandidate] = Field(default_factory=list)
    conditions: list[Condition] = conditions_field()
    observed_generation: int | None = None
    epoch: int = Field(default=0, description="Runs of this search so far; a changed spec or expert set starts the next, seeded with the elite.")
    input_digest: str | None = Field(default=None, description="Digest of the spec and selected experts the current epoch runs.")
    stop_reason: str | None = None
    merged_model: str | None = None
    report: str | None = None
    controller_job: str | None = None
    controller_starts: int | None = Field(
        default=None, description="Pods the controller Job has started; from 2 on, the search resumed from its history."
    )
    history_lost: str | None = Field(
        default=None, description="What of the current epoch's history was lost while no controller ran (the search "
        "evaluates again from what survived); set, it makes the Degraded condition True with reason HistoryLost."
    )
    start_time: str | None = None
    completion_time: str | None = None


class MergeSearch(SpecModel):
    """A search for the best merge of a set of experts."""

    api_version: Literal["evomerge.dev/v1alpha1"] = GROUP_VERSION
    kind: Literal["MergeSearch"] = "MergeSearch"
    metadata: ObjectMeta
    spec: MergeSearchSpec
    status: MergeSearchStatus | None = None
