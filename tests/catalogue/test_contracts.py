"""The contracts between processes: history events round-trip through their wire form, and a line that is
not an event is refused by its position."""

from __future__ import annotations

import json
import re

import pytest

from evomerge.catalogue.contracts import (
    Ask, Generation, HistoryEventError, Result, Tell, event_wire, parse_event, parse_events,
)


def test_every_event_round_trips_through_json():
    events = [Ask(0, 1, ("c000000", "c000001"), ((0.5, 1.0), (0.25, 0.75))),
              Result("c000000", {"t/acc": 0.5}, None, 1.25, True), Result("c000001", None, "boom"),
              Tell(("c000000", "c000001")), Generation({"round": 0, "generation": 1, "count": 2})]
    wire = [json.loads(json.dumps(event_wire(e))) for e in events]
    assert [w["type"] for w in wire] == ["ask", "result", "result", "tell", "generation"]
    assert parse_events(wire) == events


def test_a_refinement_ask_is_marked_on_the_wire_and_a_search_ask_keeps_its_old_form():
    refine = Ask(0, 2, ("c000004",), ((0.5, 0.5),), refine=True)
    assert parse_event(json.loads(json.dumps(event_wire(refine)))) == refine
    assert "refine" not in event_wire(Ask(0, 1, ("c000000",)))  # histories written before search.refine read the same


def test_a_result_written_without_its_optional_fields_reads_with_their_defaults():
    assert parse_event({"type": "result", "id": "a", "scores": {"t/acc": 1.0}}) == Result("a", {"t/acc": 1.0})


@pytest.mark.parametrize("raw, message", [
    ({"type": "resolt", "id": "a"}, "history event 3: unknown type 'resolt'"),
    ({"type": "ask", "round": 0, "ids": ["a"]}, "history event 3 (ask): KeyError: 'generation'"),
])
def test_a_line_that_is_no_event_is_named_by_its_position(raw, message):
    with pytest.raises(HistoryEventError, match=re.escape(message)):
        parse_events([event_wire(Tell(()))] * 3 + [raw])
