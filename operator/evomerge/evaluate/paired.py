"""Paired significance tests: is model B better than model A on the same items, beyond noise?

Two models scored on the same items differ item by item; a paired test uses that pairing, which is what
makes a one-point difference on a few hundred items decidable at all. Pass/fail items get McNemar's exact
test (a binomial test on the discordant pairs: only items one model passes and the other fails carry
information); anything else gets a paired bootstrap, resampling the items (per stratum, the same draw for
both models) and recomputing the statistic. Both are two-sided; p-values say how often a difference at
least this large appears when the two models are equally good. Pure Python: the operator can read these
results, and the numbers are the same on every machine for a seed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Literal, Mapping, Sequence

BOOTSTRAP_ITERATIONS = 2000  # p-values resolve to 1/2001; the Monte Carlo error at p = 0.05 is about 0.005

TestName = Literal["mcnemar", "bootstrap"]


@dataclass(frozen=True)
class PairedTest:
    """The outcome of comparing a candidate with a baseline on the same items."""

    test: TestName
    items: int
    baseline: float  # the statistic (an objective's value) for each model, on all items
    candidate: float
    p_value: float
    discordant: tuple[int, int] | None = None  # McNemar: (items only the candidate passes, only the baseline passes)

    @property
    def difference(self) -> float:
        return self.candidate - self.baseline

    def brief(self) -> str:
        """The difference and its p-value, as a table cell says it: "+0.120, p = 0.003"."""
        return f"{self.difference:+.3f}, p = {self.p_value:.2g}"

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"test": self.test, "items": self.items, "baseline": self.baseline,
                                  "candidate": self.candidate, "pValue": self.p_value}
        if self.discordant is not None:
            out["discordant"] = list(self.discordant)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> "PairedTest":
        discordant = data.get("discordant")
        return cls(str(data["test"]), int(data["items"]), float(data["baseline"]),  # type: ignore[arg-type]
                   float(data["candidate"]), float(data["pValue"]),  # type: ignore[arg-type]
                   tuple(int(x) for x in discordant) if discordant else None)  # type: ignore[arg-type,union-attr]


def mcnemar_exact(baseline: Sequence[bool], candidate: Sequence[bool]) -> tuple[float, tuple[int, int]]:
    """Two-sided exact McNemar p-value of paired pass/fail outcomes, and the discordant counts.

    With b items only the candidate passes and c only the baseline passes, under "equally good" each
    discordant item goes either way with probability 1/2: p = min(1, 2·P(X ≤ min(b, c))), X ~ Bin(b + c, 1/2).
    Computed with exact integers, so small tables give the textbook values.
    """
    if len(baseline) != len(candidate):
        raise ValueError(f"paired outcomes need the same items: {len(baseline)} baseline vs {len(candidate)} candidate")
    gained = sum(1 for a, b in zip(baseline, candidate) if b and not a)
    lost = sum(1 for a, b in zip(baseline, candidate) if a and not b)
    n = gained + lost
    if n == 0:
        return 1.0, (0, 0)
    tail = Fraction(sum(math.comb(n, i) for i in range(min(gained, lost) + 1)), 2 ** n)
    return float(min(Fraction(1), 2 * tail)), (gained, lost)


def paired_bootstrap(difference: Callable[[Mapping[str, Sequence[int]]], float], sizes: Mapping[str, int],
                     iterations: int = BOOTSTRAP_ITERATIONS, seed: int = 0) -> tuple[float, float]:
    """(observed difference, two-sided p-value) of a paired bootstrap.

    `difference(indices)` is the candidate's statistic minus the baseline's on the items at `indices`
    (per stratum, a list of positions into that stratum's items, repeats allowed); `sizes` gives each
    stratum's item count. Each iteration draws every stratum's items with replacement — the same draw for
    both models, which is the pairing — and the p-value is the share of resampled differences at least as
    far from the observed one as the observed one is from zero (the bootstrap distribution shifted to the
    null, Efron & Tibshirani §16.4), with the usual +1 so it is never 0. Seeded through a string: the same
    numbers in every process.
    """
    if iterations < 1:
        raise ValueError("a bootstrap needs at least one iteration")
    if not sizes or any(n < 1 for n in sizes.values()):
        raise ValueError(f"a bootstrap needs items in every stratum, got {dict(sizes)}")
    observed = difference({name: range(n) for name, n in sizes.items()})
    rng = random.Random(f"evomerge-bootstrap:{seed}")
    extreme = 0
    for _ in range(iterations):
        draw = {name: [rng.randrange(n) for _ in range(n)] for name, n in sorted(sizes.items())}
        if abs(difference(draw) - observed) >= abs(observed):
            extreme += 1
    return observed, (extreme + 1) / (iterations + 1)
