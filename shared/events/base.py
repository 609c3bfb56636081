"""What every topic payload has in common: camelCase JSON on the wire, UTC times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


def _assume_utc(value: datetime) -> datetime:
    """Naive timestamps are taken as UTC, as Segment's own API does."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


UtcDatetime = Annotated[datetime, AfterValidator(_assume_utc)]


class EventModel(BaseModel):
    """Base of topic payloads: immutable, camelCase aliases, snake_case attributes."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
        extra="ignore",
    )

    def to_bytes(self) -> bytes:
        """The payload as published: camelCase JSON without nulls, written by
        pydantic-core straight from the model (no intermediate dict)."""
        return self.__pydantic_serializer__.to_json(self, by_alias=True, exclude_none=True)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        return cls.model_validate_json(raw)


class Position(EventModel):
    """Where a record sits in ``customer.events``: its partition and offset.

    All of a customer's events are on one partition (the topic is keyed by customer
    id) and every consumer reads a partition in order, so a position is a watermark:
    a service that folded a customer's events up to ``offset`` on ``partition`` has
    seen every earlier event of that customer. Positions on different partitions are
    not comparable (see "Freshness" in docs/architecture.md)."""

    partition: int = Field(ge=0)
    offset: int = Field(ge=0)

    def reached_by(self, folded: Position | None) -> bool:
        """Whether a copy that folded up to ``folded`` has seen this position: the same
        partition at this offset or later, or another partition (not comparable: the
        customer's events moved, say by an alias, and the copy is taken as current).
        ``None`` (nothing folded, or no position known) never has."""
        if folded is None:
            return False
        return folded.partition != self.partition or folded.offset >= self.offset
