"""The segmenter's tables, all in the ``segmenter`` Postgres schema.

- ``profiles``: one row per customer id; traits merged last-write-wins per trait
  by event timestamp (``trait_times`` keeps each trait's timestamp); scores.
- ``event_stats``: per customer and event name, all-time count/value and the
  first and last time it happened (inactivity conditions read ``last_at``).
- ``event_rollups``: per customer, event name and UTC day, the count and the
  sum of ``revenue`` (else ``value``) — window conditions read these, never raw
  events. ``dimension`` is ``''`` for all events of that name, or
  ``'<property>=<json value>'`` for properties that active segments filter on.
- ``aliases``: an anonymous id merged into a known customer id.
- ``processed_messages``: messageIds already applied (idempotency under redelivery),
  each as the UUID of its MD5 (``md5(message_id)::uuid``): 16 bytes compared as
  bytes, where the text ids were 30–40 bytes compared by the collation.
- ``suppressions``: customer ids whose events are dropped (after a GDPR erasure,
  or on request), until the suppression is lifted.
- ``segments`` / ``segment_versions``: definitions, versioned.
- ``memberships``: who is in which segment now; ``membership_timers``: the
  earliest instant a time-dependent condition can next flip for a customer.
- ``score_fits``: each fit of the churn / LTV models.
- ``outbox``: ``segment.changes`` and ``profiles`` messages to relay;
  ``outbox_relayed``: what the relay published, kept for a replay.
- ``products``: the catalogue as the events describe it (category, latest seen) and as
  the API sets it (``consumable``: may be recommended again after a purchase); a small
  integer ``product_key`` so interactions stay narrow and the job reads integers.
- ``interactions``: per customer, product and kind (0 purchase, 1 view) a count and the
  last time, folded per batch by the consumer (set-based upsert).
- ``recommendations``: each customer's top N as published on ``profiles``.
- ``loyalty_program``: the program document (one row); ``loyalty_ledger``: points earned
  (keyed by the message that earned them and the rule) and spent.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.claims import processed_messages_table
from shared.db.engine import service_metadata
from shared.db.outbox import outbox_relayed_table, outbox_table
from shared.db.timers import timer_table
from shared.db.types import Key, Timestamp

SCHEMA = "segmenter"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


class Profile(Base):
    __tablename__ = "profiles"

    customer_id: Mapped[str] = mapped_column(Key, primary_key=True)
    traits: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    trait_times: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    first_seen_at: Mapped[datetime] = mapped_column(Timestamp)
    last_seen_at: Mapped[datetime] = mapped_column(Timestamp)
    timezone: Mapped[str | None] = mapped_column(Text)
    locale: Mapped[str | None] = mapped_column(Text)
    # scores (see services/segmenter/scoring); null until the first fit
    churn_risk: Mapped[float | None] = mapped_column(Double)
    predicted_ltv: Mapped[float | None] = mapped_column(Double)
    rfm_recency: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_frequency: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_monetary: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_tier: Mapped[str | None] = mapped_column(Text)
    score_method: Mapped[str | None] = mapped_column(Text)
    score_explanation: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # the loyalty program's balance and tier (services/segmenter/loyalty); null outside it
    loyalty_points: Mapped[int | None] = mapped_column(Integer)
    loyalty_tier: Mapped[str | None] = mapped_column(Text)
    scored_at: Mapped[datetime | None] = mapped_column(Timestamp)
    version: Mapped[int] = mapped_column(BigInteger, default=1, server_default="1")
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    # the customer.events position last folded into the profile (Freshness): every
    # ``profiles`` message carries it, the jobs' too
    folded_partition: Mapped[int | None] = mapped_column(Integer)
    folded_offset: Mapped[int | None] = mapped_column(BigInteger)


class EventStat(Base):
    __tablename__ = "event_stats"

    customer_id: Mapped[str] = mapped_column(Key, primary_key=True)
    event_name: Mapped[str] = mapped_column(Key, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    value_sum: Mapped[float] = mapped_column(Double, default=0.0, server_default="0")
    first_at: Mapped[datetime] = mapped_column(Timestamp)
    last_at: Mapped[datetime] = mapped_column(Timestamp)


class EventRollup(Base):
    __tablename__ = "event_rollups"

    customer_id: Mapped[str] = mapped_column(Key, primary_key=True)
    event_name: Mapped[str] = mapped_column(Key, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    dimension: Mapped[str] = mapped_column(Key, primary_key=True, default="", server_default="")
    count: Mapped[int] = mapped_column(Integer)
    value_sum: Mapped[float] = mapped_column(Double, default=0.0, server_default="0")


class Alias(Base):
    __tablename__ = "aliases"

    previous_id: Mapped[str] = mapped_column(Key, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Key, index=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class Suppression(Base):
    """A customer id whose events the segmenter drops: no profile is kept for it."""

    __tablename__ = "suppressions"

    customer_id: Mapped[str] = mapped_column(Key, primary_key=True)
    suppressed_at: Mapped[datetime] = mapped_column(Timestamp)
    reason: Mapped[str] = mapped_column(Text)


class Segment(Base):
    __tablename__ = "segments"

    id: Mapped[str] = mapped_column(Key, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: the version whose memberships are fully computed; < version while a backfill runs
    backfilled_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: while the current version's backfill runs, the last customer id (in key order) it
    #: has done: a backfill that stopped resumes after it (NULL: none done, or finished)
    backfill_cursor: Mapped[str | None] = mapped_column(Key)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    deleted_at: Mapped[datetime | None] = mapped_column(Timestamp)


class SegmentVersion(Base):
    __tablename__ = "segment_versions"

    segment_id: Mapped[str] = mapped_column(
        Key, ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class Membership(Base):
    __tablename__ = "memberships"

    segment_id: Mapped[str] = mapped_column(Key, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Key, primary_key=True)
    segment_version: Mapped[int] = mapped_column(Integer)
    entered_at: Mapped[datetime] = mapped_column(Timestamp)

    __table_args__ = (Index("ix_memberships_customer", "customer_id", "segment_id"),)


class ScoreFit(Base):
    """One fit of the churn / LTV models over the population, newest last."""

    __tablename__ = "score_fits"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    fitted_at: Mapped[datetime] = mapped_column(Timestamp)
    method: Mapped[str] = mapped_column(Text)
    customers: Mapped[int] = mapped_column(Integer)
    repeat_buyers: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)


outbox = outbox_table(Base.metadata)
outbox_relayed = outbox_relayed_table(Base.metadata)
#: the messageIds claimed by the consumer (``md5(messageId)::uuid``, see
#: :mod:`shared.db.claims`)
processed_messages = processed_messages_table(Base.metadata)
#: each customer's next re-evaluation (see :mod:`shared.db.timers`)
membership_timers = timer_table(Base.metadata, "membership_timers", Column("customer_id", Key))

# recommendations and loyalty, as Core tables (their SQL is hand-written in
# repository/recommendations.py and repository/loyalty.py)
products = Table(
    "products",
    Base.metadata,
    Column("product_id", Key, primary_key=True),
    Column("product_key", Integer, Identity(), nullable=False, unique=True),
    Column("category", Text),
    Column("consumable", Boolean, nullable=False, server_default="false"),
    Column("name", Text),
)

interactions = Table(
    "interactions",
    Base.metadata,
    Column("customer_id", Key, primary_key=True),
    Column("product_key", Integer, primary_key=True),
    Column("kind", SmallInteger, primary_key=True),
    Column("count", Integer, nullable=False),
    Column("last_at", Timestamp, nullable=False),
)

recommendations = Table(
    "recommendations",
    Base.metadata,
    Column("customer_id", Key, primary_key=True),
    Column("items", JSONB, nullable=False),
    Column("computed_at", Timestamp, nullable=False),
)

loyalty_program = Table(
    "loyalty_program",
    Base.metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("document", JSONB, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

loyalty_ledger = Table(
    "loyalty_ledger",
    Base.metadata,
    Column("entry_id", BigInteger, Identity(), nullable=False, unique=True),
    Column("customer_id", Key, primary_key=True),
    # the messageId that earned it ("once" for a one-off bonus, "redeem:<id>" for a spend)
    Column("source_id", Key, primary_key=True),
    Column("rule_id", Key, primary_key=True),
    Column("at", Timestamp, nullable=False),
    Column("points", Integer, nullable=False),
    Column("expires_at", Timestamp),
    Column("event", Text),
    Index("ix_loyalty_ledger_customer_at", "customer_id", "at"),
)
