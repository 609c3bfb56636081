"""Dead-letter policy: invalid messages go to ``<topic>.dlq`` with why, within limits.

Headers carry the original topic, partition, offset and the error. Past a ratio
of invalid messages in a sliding window the consumer stops and says so, instead
of draining a topic into its DLQ because of one bad deploy upstream.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from shared.errors import DeadLetterLimitExceeded
from shared.kafka.producer import EventPublisher, Message

DLQ_SUFFIX = ".dlq"


def dlq_topic(topic: str) -> str:
    return f"{topic}{DLQ_SUFFIX}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str


class DeadLetterPolicy:
    """Sends dead letters and enforces the invalid-message ratio.

    ``max_invalid_ratio`` applies, per topic, once at least ``min_seen`` messages
    are in that topic's window of its last ``window`` messages: a healthy topic
    consumed beside a broken one does not hide it.
    """

    def __init__(
        self,
        publisher: EventPublisher,
        *,
        max_invalid_ratio: float = 0.5,
        window: int = 1_000,
        min_seen: int = 20,
    ) -> None:
        self._publisher = publisher
        self._max_ratio = max_invalid_ratio
        self._min_seen = min_seen
        self._window = window
        self._recent: dict[str, deque[bool]] = {}

    def observe(self, *, topic: str, valid: int, invalid: int) -> None:
        """Count a decoded batch; raise DeadLetterLimitExceeded past the ratio."""
        recent = self._recent.setdefault(topic, deque(maxlen=self._window))
        recent.extend([False] * valid)
        recent.extend([True] * invalid)
        seen = len(recent)
        bad = sum(recent)
        if invalid and seen >= self._min_seen and bad / seen > self._max_ratio:
            raise DeadLetterLimitExceeded(
                topic=topic, invalid=bad, seen=seen, max_ratio=self._max_ratio
            )

    async def send(self, letters: list[DeadLetter]) -> None:
        """Publish dead letters and wait for the broker's acknowledgement."""
        if not letters:
            return
        await self._publisher.publish_many(
            Message(
                topic=dlq_topic(letter.topic),
                key=letter.key,
                value=letter.value or b"",
                headers=(
                    ("tenure.original_topic", letter.topic.encode()),
                    ("tenure.original_partition", str(letter.partition).encode()),
                    ("tenure.original_offset", str(letter.offset).encode()),
                    ("tenure.error", letter.reason.encode()[:4_000]),
                ),
            )
            for letter in letters
        )
