"""The dispatcher's tables, all in the ``dispatcher`` Postgres schema.

- ``profiles``: the projection of the ``profiles`` topic (:mod:`shared.db.profile_projection`):
  addresses, timezone, locale, traits and scores; erased customers keep a tombstone.
- ``templates`` / ``template_versions``: message templates, each version a JSON
  document (:class:`~services.dispatcher.templates.TemplateDefinition`).
- ``subscription_topics``: the topics a customer can opt out of (or into).
- ``preferences``: a customer's choices (global unsubscribe, channels, topics).
- ``policy``: the sending policy (caps, quiet hours, default timezone), one row.
- ``deliveries``: one row per ``dispatch_id``, written before any provider is called:
  the key that makes a redelivered request a no-op. ``sent_at`` (set when the send
  is claimed) is what the frequency caps count.
- ``outcomes``: every outcome published, for the admin API.
- ``engagement_hours``: a customer's opens and clicks by UTC hour of day (best time).
- ``deferrals``: the durable timer of each deferred delivery.
- ``outbox``: ``dispatch.outcomes``, ``customer.events`` and dead letters to relay;
  ``outbox_relayed``: what the relay published, kept for a replay.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Identity,
    Index,
    Integer,
    SmallInteger,
    Table,
    Text,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from shared.db.engine import service_metadata
from shared.db.outbox import outbox_relayed_table, outbox_table
from shared.db.profile_projection import profile_projection_table
from shared.db.timers import timer_table
from shared.db.types import Key, Timestamp

SCHEMA = "dispatcher"
metadata = service_metadata(SCHEMA)

profiles = profile_projection_table(metadata)
outbox = outbox_table(metadata)
outbox_relayed = outbox_relayed_table(metadata)
#: deferred deliveries, fired when their wait ends (:mod:`shared.db.timers`)
deferrals = timer_table(metadata, "deferrals", Column("dispatch_id", Key))

templates = Table(
    "templates",
    metadata,
    Column("template_id", Key, primary_key=True),
    Column("latest_version", Integer, nullable=False),
    Column("archived", Boolean, nullable=False, server_default=false()),
    Column("created_at", Timestamp, nullable=False, server_default=func.now()),
    Column("updated_at", Timestamp, nullable=False, server_default=func.now()),
)

template_versions = Table(
    "template_versions",
    metadata,
    Column("template_id", Key, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("definition", JSONB, nullable=False),
    Column("created_at", Timestamp, nullable=False, server_default=func.now()),
)

subscription_topics = Table(
    "subscription_topics",
    metadata,
    Column("topic", Key, primary_key=True),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    #: a customer who never chose is subscribed (opt-out) or not (opt-in)
    Column("default_subscribed", Boolean, nullable=False, server_default=text("true")),
    Column("created_at", Timestamp, nullable=False, server_default=func.now()),
)

preferences = Table(
    "preferences",
    metadata,
    Column("customer_id", Key, primary_key=True),
    Column("unsubscribed", Boolean, nullable=False, server_default=false()),
    #: channel → allowed
    Column("channels", JSONB, nullable=False, server_default="{}"),
    #: topic → subscribed
    Column("topics", JSONB, nullable=False, server_default="{}"),
    Column("updated_at", Timestamp, nullable=False, server_default=func.now()),
)

policy = Table(
    "policy",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("document", JSONB, nullable=False),
    Column("updated_at", Timestamp, nullable=False, server_default=func.now()),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("dispatch_id", Key, primary_key=True),
    Column("customer_id", Key, nullable=False),
    #: deferred, sending, sent, suppressed, failed
    Column("status", Text, nullable=False),
    Column("channel", Text),
    Column("template_id", Text, nullable=False),
    Column("template_version", Integer),
    Column("priority", SmallInteger, nullable=False),
    #: the request as consumed (JSON), to decide again when a deferral ends
    Column("request", JSONB),
    #: when the send-time policy allows the send (computed once, on arrival)
    Column("not_before", Timestamp),
    Column("deferred_until", Timestamp),
    Column("reason", Text),
    Column("provider_message_id", Text),
    #: when the send was claimed: what the frequency caps count
    Column("sent_at", Timestamp),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Index("ix_deliveries_customer_sent", "customer_id", "sent_at"),
    Index("ix_deliveries_customer_created", "customer_id", "created_at"),
    Index(
        "ix_deliveries_sending",
        "updated_at",
        postgresql_where=text("status = 'sending'"),
    ),
)

outcomes = Table(
    "outcomes",
    metadata,
    Column("outcome_id", Key, primary_key=True),
    Column("dispatch_id", Key, nullable=False),
    Column("customer_id", Key, nullable=False),
    Column("status", Text, nullable=False),
    Column("reason", Text),
    Column("channel", Text),
    Column("at", Timestamp, nullable=False),
    Column("deferred_until", Timestamp),
    Column("provider_message_id", Text),
    #: insertion order, for outcomes of one instant
    Column("seq", BigInteger, Identity(always=True), nullable=False),
    Index("ix_outcomes_dispatch", "dispatch_id"),
)

engagement_hours = Table(
    "engagement_hours",
    metadata,
    Column("customer_id", Key, primary_key=True),
    Column("hour", SmallInteger, primary_key=True),
    Column("count", Integer, nullable=False),
)

# the offers tables live with their code; imported here so the metadata holds them
from services.dispatcher.offers import tables as _offer_tables  # noqa: E402, F401
