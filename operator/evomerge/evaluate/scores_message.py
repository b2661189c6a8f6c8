"""The scorer's termination message: the one channel from an evaluation pod back to the executor.

An evaluation pod holds no API token, so its scorer reports through its container's termination message
(4096 bytes at most, kept by the kubelet) as compact JSON:
`{"k": [objective keys], "s": [[score per key] or null, … per candidate], "e": {"index": "error"}}`.
The scorer rewrites it after every candidate, so `s` lists the candidates scored so far in the batch's
order: whoever reads it after a pod died knows which candidates were done and which one was in flight.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

MESSAGE_LIMIT = 4096  # bytes the kubelet keeps of a container's termination message
_BUDGET = MESSAGE_LIMIT - 96  # room for braces, keys and a truncation marker
_SCORE_CHARS = 14  # "-1.234567e-05,": the widest a 7-significant-digit score prints
_MIN_ERROR = 24


def max_candidates_per_message(objective_keys: Sequence[str]) -> int:
    """How many candidates' scores fit in one termination message."""
    header = sum(len(json.dumps(k)) + 1 for k in objective_keys) + 16
    per_candidate = _SCORE_CHARS * max(1, len(objective_keys)) + 3
    return max(1, (_BUDGET - header) // per_candidate)


def encode_scores(items: Sequence[dict[str, Any]], objective_keys: Sequence[str]) -> str:
    """The scorer's side: `score_batch` items ({"id", "scores"} | {"id", "error"}) → a message under 4 KiB.

    Errors are cut to share what room the scores leave; scores are kept to 7 significant digits.
    """
    scores: list[list[float] | None] = []
    errors: dict[str, str] = {}
    for index, item in enumerate(items):
        values = item.get("scores")
        if values is None or any(k not in values for k in objective_keys):
            scores.append(None)
            missing = [k for k in objective_keys if values is not None and k not in values]
            errors[str(index)] = item.get("error") or f"scorer returned no {', '.join(missing)}"
        else:
            scores.append([float(f"{float(values[k]):.7g}") for k in objective_keys])
    body: dict[str, Any] = {"k": list(objective_keys), "s": scores}
    text = json.dumps(body, separators=(",", ":"))
    if errors:
        share = max(_MIN_ERROR, (MESSAGE_LIMIT - len(text.encode())) // len(errors))
        while True:
            body["e"] = {k: truncate(v, share) for k, v in errors.items()}
            text = json.dumps(body, separators=(",", ":"))
            if len(text.encode()) <= MESSAGE_LIMIT or share <= _MIN_ERROR:
                break
            share = max(_MIN_ERROR, share * 3 // 4)
    if len(text.encode()) > MESSAGE_LIMIT:
        raise ValueError(
            f"{len(items)} candidates do not fit in one termination message ({len(text.encode())} bytes) — "
            "lower evaluation.candidatesPerJob"
        )
    return text


Decoded = list[tuple[dict[str, float] | None, str | None]]


def decode_scores(message: str | None, candidates: Sequence[str], objective_keys: Sequence[str]) -> Decoded:
    """The executor's side: (scores, error) per candidate of a succeeded Job, in the Job's order."""
    reached = decode_progress(message, candidates, objective_keys)
    if reached is None:
        shown = (message or "").strip()[-300:] or "(empty)"
        problem = f"the scorer's termination message is not a result for these candidates: {shown}"
        return [(None, problem)] * len(candidates)
    missing = "the scorer ended without scoring this candidate"
    return reached + [(None, missing)] * (len(candidates) - len(reached))


def decode_progress(message: str | None, candidates: Sequence[str], objective_keys: Sequence[str]) -> Decoded | None:
    """(scores, error) of the candidates the scorer reached, in order (a prefix of `candidates`); None when
    the message is not a scorer's result for these candidates."""
    try:
        body = json.loads(message or "")
        keys, scores = body["k"], body["s"]
        errors = body.get("e", {})
        if list(keys) != list(objective_keys) or not isinstance(scores, list) or len(scores) > len(candidates):
            raise ValueError("shape")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    out: list[tuple[dict[str, float] | None, str | None]] = []
    for index, values in enumerate(scores):
        if values is None:
            out.append((None, errors.get(str(index), "the scorer reported no score")))
        else:
            out.append((dict(zip(objective_keys, map(float, values))), None))
    return out


def truncate(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."
