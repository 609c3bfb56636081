"""Turn a Segment-spec call into a :class:`CustomerEvent`, or say exactly what is wrong.

What ingest adds, as Segment does: a ``messageId`` when the client sent none,
``receivedAt``, and ``timestamp`` corrected for the client's clock skew:
``timestamp = receivedAt - (sentAt - originalTimestamp)`` when the client sent
both, ``receivedAt`` when it sent no timestamp. Numeric ids are taken as strings.

What it refuses beyond the model's own checks: a ``timestamp`` or ``sentAt``
outside [:data:`EARLIEST_TIMESTAMP`, :data:`LATEST_TIMESTAMP`), or whose skew
correction lands outside it (``invalid_timestamp``); a NUL character in any key or
string (``invalid_character``): PostgreSQL's text and jsonb cannot hold one, so
the edge refuses it rather than the segmenter dead-lettering it later.

This runs once per event on ingest's hot path, so it validates each event once,
and the client's timestamp once: the skew correction is applied to the freshly
validated model rather than to a copy of it, and the free-form objects
(``properties``, ``traits``, ``context``, ``integrations``) of a call parsed from
JSON are not walked value by value, since whatever ``orjson.loads`` returns is
already a valid JSON value (pydantic's ``JsonValue`` check calls back into Python
for every value and was about a third of the cost of an event). Callers pass
what ``orjson.loads`` returned.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from services.ingest.body import find_nul
from shared.events.customer_events import CustomerEvent, EventType

#: the accepted range of client times (timestamp, sentAt) and of corrected timestamps
EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(2100, 1, 1, tzinfo=UTC)
#: strictly between these years a time is in range whatever its UTC offset
_EARLIEST_YEAR = EARLIEST_TIMESTAMP.year
_LATEST_YEAR = LATEST_TIMESTAMP.year - 1

_ID_FIELDS = ("userId", "anonymousId", "groupId", "previousId", "messageId")
#: free-form JSON objects, stored as sent (their aliases are their names)
_JSON_OBJECT_FIELDS = ("properties", "traits", "context", "integrations")


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class InvalidEvent(Exception):
    """The event cannot be accepted; ``reason`` is the metric label, ``errors`` the detail."""

    def __init__(self, reason: str, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.reason = reason
        self.errors = errors

    def as_dict(self) -> list[dict[str, str]]:
        return [{"field": e.field, "message": e.message} for e in self.errors]


def normalize(
    raw: Any,
    *,
    call_type: EventType | None,
    received_at: datetime,
    batch_sent_at: Any = None,
    may_contain_nul: bool = True,
) -> CustomerEvent:
    """Validate one call. ``call_type`` is the endpoint's; None inside a batch.

    ``may_contain_nul=False`` skips the search for NUL characters: the caller
    knows the JSON text had no ``\\u0000`` escape.
    """
    if not isinstance(raw, dict):
        raise InvalidEvent("not_an_object", [FieldError("body", "an event must be a JSON object")])
    if may_contain_nul:
        where = find_nul(raw)
        if where is not None:
            message = "contains a NUL character (\\u0000), which cannot be stored"
            raise InvalidEvent("invalid_character", [FieldError(where, message)])
    data = dict(raw)
    if call_type is not None:
        data["type"] = call_type.value
    elif not isinstance(data.get("type"), str) or data["type"] not in _TYPES:
        raise InvalidEvent(
            "invalid_type",
            [FieldError("type", f"must be one of {', '.join(sorted(_TYPES))}")],
        )
    for name in _ID_FIELDS:
        value = data.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            data[name] = str(value)
        elif value == "":
            data[name] = None
    if data.get("messageId") is None:
        data["messageId"] = f"ingest-{uuid.uuid4()}"
    # The client's timestamp is validated once, as originalTimestamp; timestamp is
    # derived from it after validation (receivedAt when the client sent none).
    data["originalTimestamp"] = data.get("timestamp")
    data["timestamp"] = received_at
    if data.get("sentAt") is None and batch_sent_at is not None:
        data["sentAt"] = batch_sent_at
    data["receivedAt"] = received_at
    objects = {name: data.pop(name) for name in _JSON_OBJECT_FIELDS if type(data.get(name)) is dict}
    try:
        event = CustomerEvent.model_validate(data)
    except ValidationError as exc:
        details = exc.errors(include_url=False)
        errors = list(dict.fromkeys(_field_error(err) for err in details))
        missing = any(err["type"] in ("missing", "missing_field") for err in details)
        raise InvalidEvent("missing_field" if missing else "invalid_field", errors) from None
    # The model was validated a moment ago and nothing else holds it yet: setting the
    # fields that need no (further) validation in its __dict__ is what
    # ``model_copy(update=...)`` would do, without copying it.
    fields = event.__dict__
    if objects:
        fields.update(objects)
        event.__pydantic_fields_set__.update(objects)
    original = event.original_timestamp
    sent_at = event.sent_at
    if sent_at is not None:
        _check_range("sentAt", sent_at)
    if original is not None:
        _check_range("timestamp", original)
        if sent_at is not None:
            corrected = received_at - (sent_at - original)
            _check_range("timestamp", corrected, " once corrected for the clock skew of sentAt")
            fields["timestamp"] = corrected
        else:
            fields["timestamp"] = original
    return event


def _check_range(field: str, value: datetime, how: str = "") -> None:
    # both bounds hold before any arithmetic, so the skew correction cannot overflow;
    # the year alone settles almost every value (comparing aware datetimes costs more)
    if _EARLIEST_YEAR < value.year < _LATEST_YEAR:
        return
    if not EARLIEST_TIMESTAMP <= value < LATEST_TIMESTAMP:
        message = (
            f"must be from {EARLIEST_TIMESTAMP.isoformat()} to before "
            f"{LATEST_TIMESTAMP.isoformat()}{how}"
        )
        raise InvalidEvent("invalid_timestamp", [FieldError(field, message)])


_TYPES = frozenset(t.value for t in EventType)


def _field_error(error: Any) -> FieldError:
    ctx = error.get("ctx") or {}
    location = ".".join(str(part) for part in error.get("loc", ()))
    field = ctx.get("field") or location or "body"
    if field == "originalTimestamp":
        field = "timestamp"
    return FieldError(str(field), str(error.get("msg", "invalid")))
