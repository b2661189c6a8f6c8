"""The export Job's report to the operator, as compact JSON in its termination message (4 KiB at most).

`{"s": {"task/metric": score}, "h": {"input name": "sha256"}, "o": "sha256"}` on success — with `"g"`, the
promotion gate's verdict, when the version was compared with the published one — and `{"e": "what went
wrong"}` on failure. "o" is the content hash of the checkpoint as read back from the output location after it
was written: without it the operator cannot call the version published. Full input hashes are also written
next to the checkpoint; the message shortens them only when many inputs would not fit otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..evaluate.paired import PairedTest
from ..evaluate.scores_message import MESSAGE_LIMIT
from .promotion import GateResult

GATE_MESSAGE_LIMIT = 600  # characters of the gate's explanation kept, so hashes still fit beside it


@dataclass(frozen=True)
class ExportResult:
    held_out: dict[str, float] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    output: str | None = None  # content hash of the written checkpoint, read back where it was written
    gate: GateResult | None = None


def encode_export(result: ExportResult) -> str:
    if result.error is not None:
        return json.dumps({"e": " ".join(result.error.split())[: MESSAGE_LIMIT - 16]}, separators=(",", ":"))
    body: dict = {"s": _short(result.held_out)}
    if result.output is not None:
        body["o"] = result.output
    if result.gate is not None:
        gate = result.gate
        body["g"] = {"ok": gate.promoted, "r": gate.reason, "m": gate.message[:GATE_MESSAGE_LIMIT], "b": _short(gate.baseline),
                     **({"t": _short(gate.test.to_dict())} if gate.test is not None else {})}
    for width in (64, 32, 16):
        text = json.dumps({**body, "h": {k: v[:width] for k, v in result.hashes.items()}}, separators=(",", ":"))
        if len(text.encode()) <= MESSAGE_LIMIT:
            return text
    return json.dumps(body, separators=(",", ":"))


def _short(values: dict) -> dict:
    return {k: float(f"{v:.7g}") if isinstance(v, float) else v for k, v in values.items()}


def decode_export(message: str | None) -> ExportResult:
    try:
        body = json.loads(message or "")
        if "e" in body:
            return ExportResult(error=str(body["e"]))
        output = body.get("o")
        gate = None
        if "g" in body:
            g = body["g"]
            gate = GateResult(bool(g["ok"]), str(g["r"]), str(g["m"]), PairedTest.from_dict(g["t"]) if "t" in g else None,
                              {k: float(v) for k, v in g.get("b", {}).items()})
        return ExportResult({k: float(v) for k, v in body.get("s", {}).items()}, dict(body.get("h", {})),
                            output=str(output) if output else None, gate=gate)
    except (ValueError, TypeError, AttributeError, KeyError):
        shown = (message or "").strip()[-300:] or "(empty)"
        return ExportResult(error=f"the export Job's termination message is not a result: {shown}")
