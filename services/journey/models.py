"""The journey service's tables, in the ``journey`` schema.

- ``journeys``: one row per journey: its draft definition, status and the version
  new entrants take; ``journey_versions``: each published definition, immutable (a
  run keeps the version it entered, so publishing never changes a run in flight).
- ``runs``: one row per run, the machine's :class:`~services.journey.machine.Run`
  (the columns the API and the entry rules filter on, the rest in ``state``);
  ``run_timers``: each active run's one timer (its ``wake_at``).
- ``memberships`` and ``profiles``: this service's projections of ``segment.changes``
  and ``profiles``, what branches and audiences read.
- ``aliases``: ids merged into another (``profiles`` ``mergedFrom`` / ``mergedInto``):
  their runs were re-keyed, their late inputs are redirected.
- ``split_winners``: promoted winners from ``experiment.decisions``.
- ``step_counts``: how many runs reached, converted and exited at each step.
- ``run_steps``: each run's history, one row per ``journey.runs`` event.
- ``dispatch_watch``: each dispatch request published and not yet given a final
  outcome, with when to request it again (its bytes as published: the same
  ``dispatch_id``), so a request or an outcome the broker lost delays, never drops.
- ``processed_messages`` (claims of consumed message ids), ``outbox`` and
  ``outbox_relayed`` (what the relay published, kept for a replay).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.claims import processed_messages_table
from shared.db.engine import service_metadata
from shared.db.outbox import outbox_relayed_table, outbox_table
from shared.db.profile_projection import profile_projection_table
from shared.db.timers import timer_table

SCHEMA = "journey"
Key = Text(collation="C")
Timestamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


class Journey(Base):
    __tablename__ = "journeys"

    id: Mapped[str] = mapped_column(Key, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, server_default="")
    #: draft (never published), active, paused (no new entries), archived
    status: Mapped[str] = mapped_column(Text, server_default="draft")
    draft: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: the version new entrants take (the latest published); null while a draft
    version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class JourneyVersion(Base):
    __tablename__ = "journey_versions"

    journey_id: Mapped[str] = mapped_column(Key, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONB)
    published_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (
        # the entry rules: a customer's runs of a journey, latest first
        Index("ix_runs_customer", "customer_id", "journey_id", "entered_at"),
        # a journey's runs by state (lists, diagram counts); not by step, so that a run
        # moving from step to step changes no indexed column (a HOT update, with the
        # room the fill factor leaves on each page)
        Index("ix_runs_journey", "journey_id", "status"),
        # the runs in flight of the customers of a consumed batch
        Index(
            "ix_runs_active_customer",
            "customer_id",
            postgresql_where=Column("status") == "active",
        ),
        # fillfactor 80 (migration 0001): room on each page for a run's next version
    )

    run_id: Mapped[str] = mapped_column(Key, primary_key=True)
    journey_id: Mapped[str] = mapped_column(Key)
    journey_version: Mapped[int] = mapped_column(Integer)
    customer_id: Mapped[str] = mapped_column(Key)
    status: Mapped[str] = mapped_column(Text)
    step_id: Mapped[str | None] = mapped_column(Text)
    #: the run is still walking its steps (not only waiting out its goal window)
    on_steps: Mapped[bool] = mapped_column(Boolean)
    holdout: Mapped[bool] = mapped_column(Boolean)
    variant: Mapped[str | None] = mapped_column(Text)
    entered_at: Mapped[datetime] = mapped_column(Timestamp)
    wake_at: Mapped[datetime | None] = mapped_column(Timestamp)
    converted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    exited_at: Mapped[datetime | None] = mapped_column(Timestamp)
    exit_reason: Mapped[str | None] = mapped_column(Text)
    #: the rest of the machine's run: waiting, trigger, visits, seq
    state: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class MembershipRow(Base):
    __tablename__ = "memberships"

    customer_id: Mapped[str] = mapped_column(Key, primary_key=True)
    segment_id: Mapped[str] = mapped_column(Key, primary_key=True)
    entered_at: Mapped[datetime] = mapped_column(Timestamp)


class AliasRow(Base):
    __tablename__ = "aliases"

    previous_id: Mapped[str] = mapped_column(Key, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Key)
    merged_at: Mapped[datetime] = mapped_column(Timestamp)


class SplitWinner(Base):
    __tablename__ = "split_winners"

    journey_id: Mapped[str] = mapped_column(Key, primary_key=True)
    journey_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    step_id: Mapped[str] = mapped_column(Text, primary_key=True)
    variant: Mapped[str] = mapped_column(Text)
    decision_id: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(Timestamp)


class StepCount(Base):
    __tablename__ = "step_counts"

    journey_id: Mapped[str] = mapped_column(Key, primary_key=True)
    journey_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: a step id, or "" for the run as a whole (entered, held out)
    step_id: Mapped[str] = mapped_column(Text, primary_key=True)
    reached: Mapped[int] = mapped_column(BigInteger, server_default="0")
    converted: Mapped[int] = mapped_column(BigInteger, server_default="0")
    exited: Mapped[int] = mapped_column(BigInteger, server_default="0")


class RunStep(Base):
    """A run's history: one row per ``journey.runs`` event (entered, each step reached,
    each wait, converted, exited), what a customer's page shows. No customer id (the
    run has it): erasure pseudonymises the run and clears ``detail``."""

    __tablename__ = "run_steps"

    run_id: Mapped[str] = mapped_column(Key, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(Timestamp)
    step_id: Mapped[str | None] = mapped_column(Text)
    step_type: Mapped[str | None] = mapped_column(Text)
    waiting_until: Mapped[datetime | None] = mapped_column(Timestamp)
    waiting_for: Mapped[str | None] = mapped_column(Text)
    exit_reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)


metadata = Base.metadata
run_timers = timer_table(metadata, "run_timers", Column("run_id", Key))
processed_messages = processed_messages_table(metadata)
profiles = profile_projection_table(metadata)
outbox = outbox_table(metadata)
outbox_relayed = outbox_relayed_table(metadata)
#: a timer table (key ``dispatch_id``, ``due_at``) with the request beside it
dispatch_watch = Table(
    "dispatch_watch",
    metadata,
    Column("dispatch_id", Key, primary_key=True),
    Column("customer_id", Key, nullable=False),
    #: the request's bytes as first published
    Column("request", LargeBinary, nullable=False),
    #: how many times it was requested again
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("due_at", Timestamp, nullable=False),
    Index("ix_dispatch_watch_due", "due_at"),
)
