"""Compile each lm-eval prompt template once per search instead of once per document and candidate.

lm-eval renders `doc_to_text` / `doc_to_target` / ... with `env.from_string(template)`, which parses and
compiles the Jinja source on every call. A search renders the same few templates for every document of
every candidate; on small models that compilation was ~40 % of a candidate's time (benchmarks/evaluate.py).
A compiled Jinja template is immutable and bound to lm-eval's one environment, so caching it by source
changes nothing but the time.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Any, Iterator

TEMPLATES_KEPT = 1024


@functools.lru_cache(maxsize=TEMPLATES_KEPT)
def _compiled(template: str) -> Any:
    import lm_eval.utils as lm_utils

    return lm_utils.env.from_string(template)


def _apply_template(template: str, doc: dict[str, Any]) -> str:
    return _compiled(template).render(**doc)


@contextmanager
def compiled_templates() -> Iterator[None]:
    """Within the block, lm-eval's `apply_template` reuses templates compiled in any earlier block."""
    import lm_eval.utils as lm_utils

    original = lm_utils.apply_template
    lm_utils.apply_template = _apply_template
    try:
        yield
    finally:
        lm_utils.apply_template = original
