"""Many messages of one topic in one outbox row: the bytes of a pack.

An outbox row per message costs the database a heap tuple and an index entry to
insert, and the same again to delete once relayed: for a consumer batch that
emits thousands of messages, that was a sixth of PostgreSQL's work per event. A
pack is one row for up to :data:`PACK_MESSAGES` messages.

Layout, for each message in order: the key's length (``0xFFFFFFFF``: no key) and
bytes, the value's length and bytes, the number of headers, and for each header
its name's length and UTF-8 bytes and its value's length and bytes. Lengths are
unsigned 32-bit big-endian integers.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from shared.kafka.producer import Message

#: messages per pack: a pack of ~300-byte messages is about 150 kB, stored out of
#: line (TOAST) by PostgreSQL
PACK_MESSAGES = 500

_LENGTH = struct.Struct(">I")
_NO_KEY = 0xFFFFFFFF


def pack(messages: Sequence[Message]) -> bytes:
    """The bytes of ``messages`` (their topics are the row's, not packed)."""
    length = _LENGTH.pack
    parts: list[bytes] = []
    for message in messages:
        key = message.key
        if key is None:
            parts.append(length(_NO_KEY))
        else:
            parts += (length(len(key)), key)
        parts += (length(len(message.value)), message.value, length(len(message.headers)))
        for name, value in message.headers:
            encoded = name.encode()
            parts += (length(len(encoded)), encoded, length(len(value)), value)
    return b"".join(parts)


def unpack(topic: str, data: bytes) -> list[Message]:
    """The messages of a pack, in order, on ``topic``; ``ValueError`` when ``data`` is
    not a whole pack."""
    view = memoryview(data)
    read = _LENGTH.unpack_from
    messages: list[Message] = []
    at = 0
    end = len(data)

    def take(size: int) -> bytes:
        nonlocal at
        if at + size > end:
            raise ValueError(f"outbox pack cut short at byte {at} of {end}")
        chunk = bytes(view[at : at + size])
        at += size
        return chunk

    def number() -> int:
        nonlocal at
        if at + 4 > end:
            raise ValueError(f"outbox pack cut short at byte {at} of {end}")
        (value,) = read(data, at)
        at += 4
        return int(value)

    while at < end:
        key_length = number()
        key = None if key_length == _NO_KEY else take(key_length)
        value = take(number())
        headers = tuple((take(number()).decode(), take(number())) for _ in range(number()))
        messages.append(Message(topic, key, value, headers))
    return messages
