"""The promotion gate: does a newly exported MergedModel version replace the published one?

The export Job scores the new version and the published one on the same heldOut items and judges here
(`judge`, pure); the operator applies the verdict it reports (reconcile_model.py). The search's scores
cannot decide: they are maxima over hundreds of candidates on a small split and overstate every gain. A
held-out gain counts only when it is at least `minImprovement`, its paired test's p-value is below
`significance`, and no guarded objective drops by more than its tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ..evaluate.paired import PairedTest
from ..spec.merge_search import MergeSearchSpec, PromotionSpec, promotion_policy

# Condition reasons (type Promoted) and event reasons of the gate's outcomes.
FIRST_VERSION = "FirstVersion"
POLICY_ALWAYS = "PolicyAlways"
IMPROVED = "Improved"
NOT_PROMOTED = "NotPromoted"
BY_HAND = "PromotedByHand"

TEST_NAMES = {"mcnemar": "exact McNemar", "bootstrap": "paired bootstrap"}


@dataclass(frozen=True)
class GateResult:
    """The export Job's verdict on its version, with the numbers behind it."""

    promoted: bool
    reason: str
    message: str  # what happened and why, without the version numbers the operator adds
    test: PairedTest | None = None
    baseline: dict[str, float] = field(default_factory=dict)  # the published version's heldOut scores, measured again


def judge(promotion: PromotionSpec, weighted: PairedTest, each: Mapping[str, PairedTest],
          baseline: Mapping[str, float]) -> GateResult:
    """The verdict on a candidate whose weighted heldOut objective was tested against the published version's
    (`weighted`), with each heldOut objective's own test in `each` (the guarded ones are read)."""
    gain, p_value = weighted.difference, weighted.p_value
    significant = p_value < promotion.significance
    verdicts = [f"p = {p_value:.2g} {'<' if significant else '≥'} {promotion.significance:g}"]
    large_enough = gain > 0 and gain >= promotion.min_improvement
    if not large_enough:
        verdicts.append(f"below minImprovement {promotion.min_improvement:g}" if gain > 0 else "no gain")
    regressions = [(g, -each[g.key].difference) for g in promotion.guarded if -each[g.key].difference > g.tolerance]
    verdicts += [f"guarded {g.key} drops by {drop:.4g} > tolerance {g.tolerance:g} (p = {each[g.key].p_value:.2g})"
                 for g, drop in regressions]
    promoted = significant and large_enough and not regressions
    message = (f"held-out {gain:+.4g} ({weighted.baseline:.4g} → {weighted.candidate:.4g}, {TEST_NAMES[weighted.test]} "
               f"on {weighted.items} items), {'; '.join(verdicts)}")
    return GateResult(promoted, IMPROVED if promoted else NOT_PROMOTED, message, weighted, dict(baseline))


def gated(search: MergeSearchSpec) -> bool:
    """Whether the search's new versions go through the gate (storage.output.promotion, its policy resolved)."""
    output = search.storage.output
    return promotion_policy(output.promotion if output is not None else PromotionSpec(), search.held_out) == "gated"
