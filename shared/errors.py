"""Errors that cross module boundaries, carrying the data a handler needs.

TenureError
├── DeadLetterLimitExceeded  too many invalid messages → the consumer stops
└── PublishError          the broker did not acknowledge a message
    └── BrokerUnavailable the broker cannot be reached (HTTP 503)
"""

from __future__ import annotations


class TenureError(Exception):
    """Base of Tenure's own errors."""


class DeadLetterLimitExceeded(TenureError):
    def __init__(self, *, topic: str, invalid: int, seen: int, max_ratio: float) -> None:
        super().__init__(
            f"{invalid} of the last {seen} messages on {topic} were invalid "
            f"(limit {max_ratio:.0%}); stopping instead of draining the topic into its DLQ"
        )
        self.topic = topic
        self.invalid = invalid
        self.seen = seen
        self.max_ratio = max_ratio


class PublishError(TenureError):
    """The broker did not acknowledge a message; it may or may not be stored."""


class BrokerUnavailable(PublishError):
    """The broker could not be reached in time."""
