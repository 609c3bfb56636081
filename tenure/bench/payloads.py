"""The events the benchmark sends: Segment ``track`` calls, each with its own messageId.

Bodies are pre-encoded byte pieces joined around fixed-width fields, so every
event is unique, the Content-Length of a scenario never changes, and building a
body costs the load generator a few microseconds (a 100-event batch is one
``bytes.join`` over a cached template, not 100 encodings).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: distinct customers the events are spread over
CUSTOMERS = 100_000
#: a multiplier coprime with CUSTOMERS, so consecutive events hit scattered customers
_SPREAD = 7_919
_SENT_AT = b"2026-03-02T10:00:01.500Z"
_EVENT_HEAD = b'{"type":"track","userId":"'
_EVENT_MIDDLE = b'","event":"Order Completed","messageId":"'
_EVENT_TAIL = (
    b'","timestamp":"2026-03-02T10:00:00.000Z",'
    b'"properties":{"orderId":"ord-5521","revenue":42.5,"currency":"EUR","plan":"pro",'
    b'"items":3},"context":{"library":{"name":"tenure-bench","version":"1.0"},'
    b'"locale":"en-GB","ip":"203.0.113.7"}}'
)


def user_id(seq: int) -> bytes:
    return b"cust-%06d" % (seq * _SPREAD % CUSTOMERS)


def message_id(prefix: bytes, seq: int) -> bytes:
    return b"%s-%012d" % (prefix, seq)


def event(prefix: bytes, seq: int) -> bytes:
    """One track call as ``/v1/batch`` takes it (with ``type``)."""
    return b"".join(
        (_EVENT_HEAD, user_id(seq), _EVENT_MIDDLE, message_id(prefix, seq), _EVENT_TAIL)
    )


def single_body(prefix: bytes, seq: int) -> bytes:
    """One call for ``/v1/track``, with the ``sentAt`` an SDK adds."""
    return event(prefix, seq)[:-1] + b',"sentAt":"' + _SENT_AT + b'"}'


#: batch templates per request shape; template ``k`` holds customers ``k*size`` … ``+size-1``
_TEMPLATES = 1_000
_HOLE = b"\x00"


class BatchBodies:
    """``{"sentAt": ..., "batch": [...]}`` bodies of ``size`` events, unique per request.

    The messageId of event ``i`` of request ``r`` is ``<prefix>-<r:09d><i:03d>``;
    its customer comes from one of :data:`_TEMPLATES` rotating templates, so the
    events of a run spread over ``_TEMPLATES * size`` customers (capped at CUSTOMERS).
    """

    def __init__(self, prefix: bytes, size: int) -> None:
        if not 1 <= size <= 999:
            raise ValueError("a batch holds 1 to 999 events")
        self._prefix = prefix
        self._size = size
        self._parts: dict[int, list[bytes]] = {}

    def body(self, request_seq: int) -> bytes:
        parts = self._parts.get(request_seq % _TEMPLATES)
        if parts is None:
            parts = self._parts[request_seq % _TEMPLATES] = self._template(request_seq % _TEMPLATES)
        return (b"%09d" % request_seq).join(parts)

    def _template(self, k: int) -> list[bytes]:
        events = [
            b"".join(
                (
                    _EVENT_HEAD,
                    user_id(k * self._size + i),
                    _EVENT_MIDDLE,
                    self._prefix + b"-" + _HOLE + b"%03d" % i,
                    _EVENT_TAIL,
                )
            )
            for i in range(self._size)
        ]
        body = b'{"sentAt":"' + _SENT_AT + b'","batch":[' + b",".join(events) + b"]}"
        return body.split(_HOLE)


@dataclass(frozen=True, slots=True)
class RequestShape:
    """What one scenario posts: a path and how many events each request carries.

    ``events_per_request == 1`` posts :func:`single_body`, more posts :func:`batch_body`.
    """

    path: str
    events_per_request: int

    def bodies(self, prefix: bytes) -> BodyFactory:
        """A function from a request's sequence number to its body."""
        if self.events_per_request == 1:
            return lambda seq: single_body(prefix, seq)
        return BatchBodies(prefix, self.events_per_request).body


BodyFactory = Callable[[int], bytes]
