"""The catalog's index: which events, segments and outcomes any run reads."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from services.journey.catalog import Catalog

SEND = {"id": "mail", "type": "send", "channels": ["email"], "template_id": "t", "next": "x"}


def rows(**journeys: tuple[str, dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    journey_rows = [
        SimpleNamespace(id=key, status=status, version=1) for key, (status, _) in journeys.items()
    ]
    version_rows = [
        SimpleNamespace(journey_id=key, version=1, definition=document)
        for key, (_, document) in journeys.items()
    ]
    return journey_rows, version_rows


def test_the_index_of_what_runs_read() -> None:
    live = {
        "triggers": [{"kind": "event", "event": "Cart Updated"}],
        "audience_segment": "buyers",
        "exit_on_audience_leave": True,
        "goal": {"event": "Order Completed", "within": "P1D"},
        "steps": [
            dict(SEND, on_failure="x"),
            {"id": "x", "type": "exit"},
        ],
    }
    paused: dict[str, Any] = {
        "triggers": [{"kind": "segment", "segment_id": "inactive"}],
        "steps": [
            SEND,
            {
                "id": "seen",
                "type": "wait_for_engagement",
                "send_step": "mail",
                "timeout": 60,
                "next": "x",
                "on_timeout": "x",
            },
            {"id": "x", "type": "exit"},
        ],
    }
    paused["steps"][0] = dict(SEND, next="seen")
    archived = {
        "triggers": [{"kind": "event", "event": "Old"}],
        "steps": [{"id": "x", "type": "exit"}],
    }
    journey_rows, version_rows = rows(
        live=("active", live), paused=("paused", paused), old=("archived", archived)
    )
    catalog = Catalog.build(journey_rows, version_rows, [])
    assert set(catalog.active) == {"live"} and catalog.archived == {"old"}
    assert set(catalog.by_event) == {"Cart Updated"} and catalog.by_segment == {}
    # a paused journey's runs go on: its waits and engagement events are still read
    assert catalog.read_events == {
        "Cart Updated",
        "Order Completed",
        "Email Opened",
        "Push Opened",
        "Email Link Clicked",
        "Message Link Clicked",
    }
    assert catalog.read_segments == {"buyers"}  # the paused trigger starts nothing
    assert catalog.read_outcomes == {("live", 1, "mail"), ("paused", 1, "mail")}
