"""Every merge method evomerge runs, declared once: what it evolves, what it needs, how mergekit names it.

The spec's `merge.method` values, its validators and CEL rules, the adapter rules, mergekit's format
(both ways) and the merge math all read these entries; `merge/methods.py` attaches the tensor math to
the names. The values are mergekit 0.1.5's (mergekit/merge_methods/registry.py), so a recipe means the
same thing to both. Adding a method is one entry here plus its math in `merge/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["linear", "slerp", "task_arithmetic"]
Sparsifier = Literal["magnitude", "random", "magnitude_outliers"]


@dataclass(frozen=True)
class Option:
    """A method-wide setting of mergekit's (one value per merge, never evolved), with mergekit's default."""

    name: str
    type: type  # bool or float
    default: bool | float | None = None  # None: the method's own default (normalize, rescale)


@dataclass(frozen=True)
class Gene:
    """A per-expert parameter a search can evolve: what it means, its default search box [low, high] and,
    where not every number is a value it can take, its `domain` (low, high] that any box must lie within.

    The spec's merge.bounds (one field per gene), its validators, CEL rules and reference docs derive from it.
    """

    name: str
    meaning: str
    bounds: tuple[float, float]
    domain: tuple[float, float] | None = None

    @property
    def description(self) -> str:
        return f"[low, high] of {self.meaning}{f'; within {self.domain_text}' if self.domain else ''}."

    @property
    def domain_text(self) -> str:
        assert self.domain is not None
        return f"({self.domain[0]:g}, {self.domain[1]:g}]"

    def domain_refusal(self, path: str) -> str:
        """Why a box at `path` outside the domain is refused."""
        return f"{path} must lie within {self.domain_text}: {self.name} is {self.meaning}"


GENE_DECLARATIONS: dict[str, Gene] = {
    g.name: g
    for g in (
        Gene("weight", "each expert's weight", (0.0, 1.0)),
        Gene("density", "the fraction of a task vector kept", (0.1, 1.0), domain=(0.0, 1.0)),
        Gene("t", "slerp's interpolation factor from the base (0) to the expert (1)", (0.0, 1.0)),
    )
}
GENES = tuple(GENE_DECLARATIONS)
DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {name: g.bounds for name, g in GENE_DECLARATIONS.items()}

NORMALIZE = Option("normalize", bool)
RESCALE = Option("rescale", bool)
LAMBDA = Option("lambda", float, 1.0)
_TASK_ARITHMETIC_OPTIONS = (NORMALIZE, RESCALE, LAMBDA)


@dataclass(frozen=True)
class Method:
    """One merge method.

    `genes` are the per-expert parameters a search can evolve (and a recipe must give); `family` picks the
    math: linear and slerp mix the models themselves, the task-arithmetic family mixes task vectors θᵢ − b
    (sparsified by `sparsifier`, sign-elected when `consensus`). `experts` fixes how many experts a merge
    takes (slerp interpolates the base with exactly one); `shared_genes` are mergekit parameters of the
    whole merge rather than of one model (slerp's t). `low_rank`: over LoRA experts every candidate is one
    combined adapter over the base (merge/adapter.py). `reference`: a plain weighted sum, where a one-hot
    weight reproduces an expert and 1/N weights are the uniform merge, so a comparison's reference rows use it
    (one such method with a base, one without).
    """

    name: str
    family: Family
    genes: tuple[str, ...]
    normalize_default: bool
    rescale_default: bool = False
    sparsifier: Sparsifier | None = None
    consensus: bool = False
    options: tuple[Option, ...] = _TASK_ARITHMETIC_OPTIONS
    experts: int | None = None
    shared_genes: tuple[str, ...] = ()
    low_rank: bool = False
    reference: bool = False
    mergekit_name: str = ""

    def __post_init__(self) -> None:
        undeclared = [g for g in self.genes if g not in GENE_DECLARATIONS]
        if undeclared:
            raise ValueError(f"method {self.name}: genes {undeclared} are not declared in GENE_DECLARATIONS")
        if not self.mergekit_name:
            object.__setattr__(self, "mergekit_name", self.name)

    @property
    def needs_base(self) -> bool:
        """Task vectors and slerp's interpolation start from the base; linear mixes the experts alone."""
        return self.family != "linear"

    @property
    def task_arithmetic(self) -> bool:
        return self.family == "task_arithmetic"

    @property
    def mixture_weights(self) -> bool:
        """Its weights mix the models (linear: a convex combination, normalised by default), so the simplex —
        positive weights summing to one per group — is where its good merges lie. The task-arithmetic family's
        weights scale task vectors instead, and their optima sum above one (Sakana's evolved weights to about 2,
        the zoo's best grid merge to 2.25), so a simplex would keep a search from them."""
        return self.family == "linear"

    @property
    def one_expert(self) -> bool:
        """Interpolates the base with exactly one expert (slerp)."""
        return self.experts == 1

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

    def default(self, option: Option) -> bool | float | None:
        """The option's value when a recipe leaves it unset."""
        return {"normalize": self.normalize_default, "rescale": self.rescale_default}.get(option.name, option.default)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("linear", "linear", ("weight",), normalize_default=True, options=(NORMALIZE,), low_rank=True,
               reference=True),
        Method("task_arithmetic", "task_arithmetic", ("weight",), normalize_default=False, low_rank=True,
               reference=True),
        Method("ties", "task_arithmetic", ("weight", "density"), normalize_default=True, sparsifier="magnitude",
               consensus=True),
        Method("dare_ties", "task_arithmetic", ("weight", "density"), normalize_default=False, rescale_default=True,
               sparsifier="random", consensus=True),
        Method("dare_linear", "task_arithmetic", ("weight", "density"), normalize_default=False, rescale_default=True,
               sparsifier="random"),
        # Model Breadcrumbs (arXiv 2312.06795): drop the smallest task-vector entries and the γ largest outliers.
        Method("breadcrumbs", "task_arithmetic", ("weight", "density"), normalize_default=False,
               sparsifier="magnitude_outliers", options=(*_TASK_ARITHMETIC_OPTIONS, Option("gamma", float, 0.01))),
        Method("slerp", "slerp", ("t",), normalize_default=False, options=(), experts=1, shared_genes=("t",)),
    )
}
METHOD_NAMES = tuple(METHODS)
DEFAULT_METHOD = "task_arithmetic"
BASELESS_METHODS = tuple(name for name, m in METHODS.items() if not m.needs_base)
LOW_RANK_METHODS = tuple(name for name, m in METHODS.items() if m.low_rank)
MIXTURE_METHODS = tuple(name for name, m in METHODS.items() if m.mixture_weights and "weight" in m.genes)


def methods_with(gene: str) -> tuple[str, ...]:
    """The methods that evolve `gene`, for messages that say which method to pick instead."""
    return tuple(name for name, m in METHODS.items() if gene in m.genes)


def reference_method(with_base: bool) -> Method:
    """The weighted sum a comparison's reference rows (each expert alone, the uniform merge) are merged with."""
    return next(m for m in METHODS.values() if m.reference and m.needs_base == with_base)


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"merge method {name!r} is not implemented; known: {', '.join(METHOD_NAMES)}") from None
