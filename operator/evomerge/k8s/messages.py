"""The export Job's report to the operator, as compact JSON in its termination message (4 KiB at most).

`{"s": {"task/metric": score}, "h": {"input name": "sha256"}, "o": "sha256"}` on success, `{"e": "what went
wrong"}` on failure. "o" is the content hash of the checkpoint as read back from the output location after it
was written: without it the operator cannot call the version published. Full input hashes are also written
next to the checkpoint; the message shortens them only when many inputs would not fit otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..evaluate.scores_message import MESSAGE_LIMIT


@dataclass(frozen=True)
class ExportResult:
    held_out: dict[str, float] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    output: str | None = None  # content hash of the written checkpoint, read back where it was written


def encode_export(result: ExportResult) -> str:
    if result.error is not None:
        return json.dumps({"e": " ".join(result.error.split())[: MESSAGE_LIMIT - 16]}, separators=(",", ":"))
    scores = {k: float(f"{v:.7g}") for k, v in result.held_out.items()}
    written = {"o": result.output} if result.output is not None else {}
    for width in (64, 32, 16):
        text = json.dumps({"s": scores, "h": {k: v[:width] for k, v in result.hashes.items()}, **written}, separators=(",", ":"))
        if len(text.encode()) <= MESSAGE_LIMIT:
            return text
    return json.dumps({"s": scores, **written}, separators=(",", ":"))


def decode_export(message: str | None) -> ExportResult:
    try:
        body = json.loads(message or "")
        if "e" in body:
            return ExportResult(error=str(body["e"]))
        output = body.get("o")
        return ExportResult({k: float(v) for k, v in body.get("s", {}).items()}, dict(body.get("h", {})),
                            output=str(output) if output else None)
    except (ValueError, TypeError, AttributeError):
        shown = (message or "").strip()[-300:] or "(empty)"
        return ExportResult(error=f"the export Job's termination message is not a result: {shown}")
