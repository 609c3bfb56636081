"""The topic registry: each topic declared once — its name, key, model, encoder,
decoder and dead-letter topic — and everything else derived from it.

Derived from :data:`TOPICS`: the consumers' decoders (:func:`decoders`), the topics
``tenure topics`` and the dev stack create (:data:`ALL_TOPICS`, with their DLQs), and
the topic table of docs/architecture.md (:func:`render_table`; regenerate it with
``python -m shared.events.registry --write-docs``, a test checks it is current).

One encoder per message: every Python producer writes a payload through its topic's
:meth:`Topic.encode` (or :meth:`Topic.message`): the model's bytes (camelCase, no
nulls, UTC as ``Z``), written by pydantic's serializer or, where measured faster
(``orjson_models``), by orjson from the attributes. Hot producers that hold
already-valid values (the segmenter's thousands of changes and profiles per batch)
hand the values to :meth:`Topic.encode_values` instead of building a model (orjson,
several times faster than validating a model). Property tests show both write the
model's bytes, for every topic; what orjson does not write as pydantic does (an
integer beyond 64 bits) falls back to pydantic. Producers
that build JSON in SQL for speed (the segmenter's sweep and backfill) are checked by
decoding every message each service queues with :meth:`Topic.decode`
(tests/integration/*/test_outbox_formats.py).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel

from shared.events import (
    customer_events,
    dispatch_outcomes,
    dispatch_requests,
    experiment_decisions,
    journey_runs,
    profiles,
    segment_changes,
)
from shared.events.base import EventModel
from shared.kafka.producer import Message

M = TypeVar("M", bound=EventModel)


@cache
def _aliases(model: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    return tuple((name, field.alias or name) for name, field in model.model_fields.items())


@cache
def _layout(model: type[BaseModel]) -> tuple[tuple[str, str, Any], ...]:
    """Each field's attribute name, JSON name and default (``None``: none or required)."""
    return tuple(
        (name, field.alias or name, field.get_default(call_default_factory=True))
        for name, field in model.model_fields.items()
    )


def _nested(value: Any) -> dict[str, Any]:
    """orjson's ``default``: a nested model as its aliased, non-null attributes."""
    if isinstance(value, BaseModel):
        values = value.__dict__
        return {
            alias: item
            for name, alias in _aliases(type(value))
            if (item := values[name]) is not None
        }
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_model(payload: EventModel) -> bytes:
    """``payload.to_bytes()``'s bytes, written by orjson from the attributes (pydantic's
    serializer for what orjson does not write as it does: an integer beyond 64 bits)."""
    try:
        return orjson.dumps(_nested(payload), default=_nested, option=orjson.OPT_UTC_Z)
    except TypeError:
        return payload.to_bytes()


def encode_values(model: type[EventModel], values: Mapping[str, Any]) -> bytes:
    """The bytes ``model(**values).to_bytes()`` gives, written by orjson from the values
    (by attribute name; a missing one takes the field's default) without building the
    model. The values must be valid already: aware datetimes, nested payloads as models
    or as mappings by JSON name without nulls. Falls back to pydantic for what orjson
    does not write as it does (an integer beyond 64 bits)."""
    document = {}
    for name, alias, default in _layout(model):
        value = values.get(name, default)
        if value is not None:
            document[alias] = value
    try:
        return orjson.dumps(document, default=_nested, option=orjson.OPT_UTC_Z)
    except TypeError:
        return model.model_validate(dict(values)).to_bytes()


@dataclass(frozen=True, slots=True)
class Topic(Generic[M]):
    """One topic: its name, its payload model and the field it is keyed by."""

    name: str
    model: type[M]
    producers: str
    consumers: str
    #: the payload's attribute whose UTF-8 bytes are the message key: the customer's id,
    #: so that each customer's messages keep their order, unless told otherwise
    key_field: str = "customer_id"
    #: for people: what the key is
    key_doc: str = "customer id"
    #: for people: a note on the model, after its version in the docs' table
    about: str = ""
    #: encode models with orjson from their attributes rather than pydantic's serializer
    #: (the same bytes): measured faster for flat models with several datetimes
    orjson_models: bool = False

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"

    @property
    def module(self) -> str:
        return self.model.__module__

    def key(self, payload: M) -> bytes:
        return str(getattr(payload, self.key_field)).encode()

    def encode(self, payload: M) -> bytes:
        """The topic's one encoder: ``payload.to_bytes()``'s bytes, written by pydantic's
        serializer, or by orjson from the attributes where that was measured faster
        (``orjson_models``)."""
        if self.orjson_models:
            return encode_model(payload)
        return payload.to_bytes()

    def encode_values(self, **values: Any) -> bytes:
        """The same bytes from the values, for hot producers that hold valid values
        (see :func:`encode_values`): no model is built."""
        return encode_values(self.model, values)

    def decode(self, raw: bytes) -> M:
        """The payload, validated; ``pydantic.ValidationError`` when it is not one."""
        return self.model.model_validate_json(raw)

    def message(self, payload: M) -> Message:
        return Message(self.name, self.key(payload), self.encode(payload))


CUSTOMER_EVENTS = Topic(
    name=customer_events.TOPIC,
    model=customer_events.CustomerEvent,
    key_doc="customer id (userId, else anonymousId)",
    producers=("ingest; journey (trait updates), dispatcher (engagement) — through their outboxes"),
    consumers="segmenter, journey, metrics",
    about="(the Segment spec)",
)
SEGMENT_CHANGES = Topic(
    name=segment_changes.TOPIC,
    model=segment_changes.SegmentChange,
    producers="segmenter (outbox; the sweep and the backfill build the JSON in SQL)",
    consumers="journey, metrics",
)
PROFILES = Topic(
    name=profiles.TOPIC,
    model=profiles.ProfileUpdate,
    producers="segmenter (outbox)",
    consumers="journey, dispatcher, metrics (erasures and id merges only)",
)
DISPATCH_REQUESTS = Topic(
    name=dispatch_requests.TOPIC,
    model=dispatch_requests.DispatchRequest,
    producers="journey (outbox)",
    consumers="dispatcher, metrics",
)
DISPATCH_OUTCOMES = Topic(
    name=dispatch_outcomes.TOPIC,
    model=dispatch_outcomes.DispatchOutcome,
    producers="dispatcher (outbox)",
    consumers="journey, metrics",
)
JOURNEY_RUNS = Topic(
    name=journey_runs.TOPIC,
    model=journey_runs.JourneyRunEvent,
    producers="journey (outbox)",
    consumers="metrics",
    orjson_models=True,  # 4-5 per transition, 3-4 datetimes each: about 3x faster
)
EXPERIMENT_DECISIONS = Topic(
    name=experiment_decisions.TOPIC,
    model=experiment_decisions.ExperimentDecision,
    key_field="journey_id",
    key_doc="**journey id**",
    producers="metrics (outbox)",
    consumers="journey",
)

#: every topic Tenure produces, in flow order
TOPICS: tuple[Topic[Any], ...] = (
    CUSTOMER_EVENTS,
    SEGMENT_CHANGES,
    PROFILES,
    DISPATCH_REQUESTS,
    DISPATCH_OUTCOMES,
    JOURNEY_RUNS,
    EXPERIMENT_DECISIONS,
)
BY_NAME: Mapping[str, Topic[Any]] = {topic.name: topic for topic in TOPICS}
ALL_TOPICS: tuple[str, ...] = tuple(topic.name for topic in TOPICS)


def topic(name: str) -> Topic[Any]:
    """The registered topic of that name; ``KeyError`` for another."""
    return BY_NAME[name]


def decoders(*topics: Topic[Any]) -> dict[str, Callable[[bytes], Any]]:
    """The consumer runner's ``decoders`` for these topics."""
    return {t.name: t.decode for t in topics}


# -- the docs' topic table ------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
_BEGIN = "<!-- topics: generated by `python -m shared.events.registry --write-docs` -->"
_END = "<!-- /topics -->"


def render_table() -> str:
    """The markdown table of every topic and the DLQs, as docs/architecture.md holds it."""
    lines = [
        "| topic | key | payload model | producer | consumers |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in TOPICS:
        path = t.module.replace(".", "/") + ".py"
        lines.append(
            f"| `{t.name}` | {t.key_doc} | `{path}` `{t.model.__name__}` "
            f"v{t.model.model_fields['schema_version'].default}{' ' + t.about if t.about else ''}"
            f" | {t.producers} | {t.consumers} |"
        )
    lines.append(
        "| `<topic>.dlq` | as consumed | the original bytes, headers "
        "`tenure.original_topic/_partition/_offset`, `tenure.error` | any consumer | people |"
    )
    return "\n".join(lines)


def documented_table(doc: str) -> str:
    """The table between the generated-section markers of ``doc``."""
    match = re.search(re.escape(_BEGIN) + r"\n(.*?)\n" + re.escape(_END), doc, re.DOTALL)
    if match is None:
        raise ValueError("docs/architecture.md has no generated topic table")
    return match.group(1)


def write_docs(path: Path = DOC) -> bool:
    """Rewrite the doc's topic table from the registry; ``True`` when it changed."""
    doc = path.read_text()
    updated = doc.replace(documented_table(doc), render_table(), 1)
    if updated == doc:
        return False
    path.write_text(updated)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--write-docs", action="store_true", help="update docs/architecture.md")
    args = parser.parse_args(argv)
    if args.write_docs:
        print("updated" if write_docs() else "already current")
    else:
        print(render_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
