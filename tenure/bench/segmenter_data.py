"""The data ``tenure bench segmenter`` runs on: segments, customer events and profiles.

Everything is deterministic for a given seed, so two runs see the same work:

- :data:`CONSUMER_SEGMENTS`: 20 segments mixing every leaf kind the event path
  evaluates (traits, all-time and windowed counts with and without ``where``,
  value sums and averages, inactivity, first seen, segment references, scores);
- :class:`EventStream`: identify / track / page events of a pool of customers, as
  ingest publishes them (camelCase JSON), with timestamps over the last weeks and
  realistic properties (revenue, category, …);
- :data:`SWEEP_SEGMENTS` and :func:`profile_fill_sql`: the time-dependent segments
  of the sweep and the SQL that makes ``profiles`` / ``event_stats`` /
  ``event_rollups`` rows for a million customers set-based (``generate_series``).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

PURCHASE = "Order Completed"

CONSUMER_SEGMENTS: dict[str, dict[str, Any]] = {
    "plan-pro": {"kind": "trait", "trait": "plan", "op": "eq", "value": "pro"},
    "north-america": {"kind": "trait", "trait": "country", "op": "in", "value": ["US", "CA"]},
    "has-email": {"kind": "trait", "trait": "email", "op": "exists", "value": True},
    "gmail": {"kind": "trait", "trait": "email", "op": "contains", "value": "@gmail."},
    "big-company": {"kind": "trait", "trait": "employees", "op": "gte", "value": 500},
    "signed-up-30d": {"kind": "trait", "trait": "signup_date", "op": "newer_than", "days": 30},
    "buyers": {"kind": "event_count", "event": PURCHASE, "op": "gte", "count": 1},
    "buyers-30d": {
        "kind": "event_count",
        "event": PURCHASE,
        "op": "gte",
        "count": 1,
        "within_days": 30,
    },
    "electronics-buyers-90d": {
        "kind": "event_count",
        "event": PURCHASE,
        "op": "gte",
        "count": 1,
        "within_days": 90,
        "where": {"property": "category", "equals": "electronics"},
    },
    "spent-200-90d": {
        "kind": "event_value",
        "event": PURCHASE,
        "aggregate": "sum",
        "op": "gt",
        "value": 200,
        "within_days": 90,
    },
    "avg-order-over-60": {
        "kind": "event_value",
        "event": PURCHASE,
        "aggregate": "avg",
        "op": "gt",
        "value": 60,
    },
    "browsing-7d": {
        "kind": "event_count",
        "event": "Product Viewed",
        "op": "gte",
        "count": 3,
        "within_days": 7,
    },
    "cart-abandoners-7d": {
        "kind": "all",
        "rules": [
            {
                "kind": "event_count",
                "event": "Product Added",
                "op": "gte",
                "count": 1,
                "within_days": 7,
            },
            {"kind": "event_count", "event": PURCHASE, "op": "eq", "count": 0, "within_days": 7},
        ],
    },
    "inactive-30d": {"kind": "last_event", "older_than_days": 30},
    "no-purchase-60d": {"kind": "last_event", "event": PURCHASE, "older_than_days": 60},
    "new-14d": {"kind": "first_seen", "newer_than_days": 14},
    "loyal-buyers": {
        "kind": "all",
        "rules": [
            {"kind": "segment", "segment_id": "buyers"},
            {"kind": "first_seen", "older_than_days": 30},
        ],
    },
    "engaged-pro": {
        "kind": "any",
        "rules": [
            {"kind": "segment", "segment_id": "plan-pro"},
            {
                "kind": "all",
                "rules": [
                    {"kind": "segment", "segment_id": "browsing-7d"},
                    {"kind": "not", "rule": {"kind": "segment", "segment_id": "inactive-30d"}},
                ],
            },
        ],
    },
    "churn-risk": {"kind": "score", "score": "churn_risk", "op": "gt", "value": 0.7},
    "champions": {"kind": "rfm_tier", "in": ["champions", "loyal"]},
}
"""The 20 segments active while the consumer runs (ids are also their names)."""

SWEEP_SEGMENTS: dict[str, dict[str, Any]] = {
    "inactive-30d": {"kind": "last_event", "older_than_days": 30},
    "buyers-30d": {
        "kind": "event_count",
        "event": PURCHASE,
        "op": "gte",
        "count": 1,
        "within_days": 30,
    },
    "spent-100-90d": {
        "kind": "event_value",
        "event": PURCHASE,
        "aggregate": "sum",
        "op": "gte",
        "value": 100,
        "within_days": 90,
    },
    "new-14d": {"kind": "first_seen", "newer_than_days": 14},
    "lapsed-buyers": {
        "kind": "all",
        "rules": [
            {"kind": "event_count", "event": PURCHASE, "op": "gte", "count": 1},
            {"kind": "last_event", "event": PURCHASE, "older_than_days": 60},
        ],
    },
}
"""The time-dependent segments of the sweep scenario."""

_TRACKS: tuple[tuple[str, float], ...] = (
    ("Product Viewed", 0.45),
    ("Product Added", 0.15),
    (PURCHASE, 0.08),
    ("Signed In", 0.17),
    ("Search Performed", 0.15),
)
_CATEGORIES = ("electronics", "books", "garden", "toys", "fashion", "grocery")
_PLANS = ("free", "free", "free", "pro", "team")
_COUNTRIES = ("US", "CA", "GB", "DE", "FR", "BR", "IN", "JP")
_DOMAINS = ("gmail.com", "example.com", "outlook.com", "acme.io")
_TIMEZONES = ("America/New_York", "Europe/Berlin", "Asia/Tokyo", "America/Sao_Paulo")
_LOCALES = ("en-US", "de-DE", "ja-JP", "pt-BR")


@dataclass(frozen=True, slots=True)
class GeneratedEvent:
    """One event as the topic holds it, and the row the COPY baseline writes for it."""

    key: bytes
    value: bytes
    copy_row: tuple[str, str, datetime, str]


class EventStream:
    """Customer events for a pool of ``customers``: 10% identify, 15% page, 75% track.

    A few customers are much more active than the rest (a fifth of the events go
    to 2% of the pool), as in real traffic. Timestamps go back up to ``days``
    days from ``now``, most of them recent.
    """

    def __init__(self, *, customers: int, now: datetime, seed: int = 7, days: float = 60) -> None:
        self._rng = random.Random(seed)
        self._customers = customers
        self._now = now
        self._days = days
        self._heavy = max(1, customers // 50)
        self._names = [name for name, _ in _TRACKS]
        self._weights = [weight for _, weight in _TRACKS]
        self._salt = uuid.UUID(int=self._rng.getrandbits(128)).hex[:8]
        self._serial = 0

    def customer_id(self, index: int) -> str:
        return f"bench-{index:07d}"

    def take(self, count: int) -> list[GeneratedEvent]:
        return [self.next() for _ in range(count)]

    def __iter__(self) -> Iterator[GeneratedEvent]:
        while True:
            yield self.next()

    def next(self) -> GeneratedEvent:
        rng = self._rng
        heavy = rng.random() < 0.2
        index = rng.randrange(self._heavy if heavy else self._customers)
        customer_id = self.customer_id(index)
        age = min(rng.expovariate(1 / 6), self._days)  # days; most events are recent
        at = self._now - timedelta(days=age)
        self._serial += 1
        event: dict[str, Any] = {
            "schemaVersion": 1,
            "messageId": f"bench-{self._salt}-{self._serial}",
            "userId": customer_id,
            "timestamp": at.isoformat(),
            "receivedAt": self._now.isoformat(),
            "context": {"library": {"name": "analytics-python", "version": "2.3.0"}},
        }
        if rng.random() < 0.3:
            pick = index % len(_TIMEZONES)
            event["context"]["timezone"] = _TIMEZONES[pick]
            event["context"]["locale"] = _LOCALES[pick]
        roll = rng.random()
        if roll < 0.10:
            event["type"] = "identify"
            event["traits"] = self._traits(index, rng)
            name, properties = "identify", event["traits"]
        elif roll < 0.25:
            event["type"] = "page"
            event["name"] = "Product"
            properties = {"path": f"/p/{rng.randrange(5_000)}", "referrer": "https://search"}
            event["properties"] = properties
            name = "Page Viewed"
        else:
            name = rng.choices(self._names, self._weights)[0]
            event["type"] = "track"
            event["event"] = name
            properties = self._properties(name, rng)
            event["properties"] = properties
        value = orjson.dumps(event)
        return GeneratedEvent(
            customer_id.encode(),
            value,
            (customer_id, name, at, orjson.dumps(properties).decode()),
        )

    def _traits(self, index: int, rng: random.Random) -> dict[str, Any]:
        signup = self._now - timedelta(days=(index * 7919) % 400)
        traits: dict[str, Any] = {
            "email": f"user{index}@{_DOMAINS[index % len(_DOMAINS)]}",
            "name": f"Customer {index}",
            "plan": _PLANS[(index + rng.randrange(2)) % len(_PLANS)],
            "country": _COUNTRIES[index % len(_COUNTRIES)],
            "signup_date": signup.date().isoformat(),
            "logins": rng.randrange(200),
        }
        if index % 3 == 0:
            traits["company"] = f"Company {index // 3}"
            traits["employees"] = (index * 37) % 2_000
        return traits

    def _properties(self, name: str, rng: random.Random) -> dict[str, Any]:
        product = rng.randrange(5_000)
        category = _CATEGORIES[product % len(_CATEGORIES)]
        if name == PURCHASE:
            revenue = round(rng.lognormvariate(3.8, 0.8), 2)
            return {
                "order_id": f"o-{rng.getrandbits(40):x}",
                "revenue": revenue,
                "currency": "USD",
                "category": category,
                "products": [{"product_id": f"p-{product}", "price": revenue, "quantity": 1}],
            }
        if name in ("Product Viewed", "Product Added"):
            return {
                "product_id": f"p-{product}",
                "category": category,
                "price": round(rng.uniform(5, 400), 2),
            }
        if name == "Search Performed":
            return {"query": f"term {rng.randrange(1_000)}"}
        return {"method": "password"}


# --- a million profiles, set-based --------------------------------------------------------


def profile_fill_sql(*, profiles: int) -> list[str]:
    """Statements making ``profiles`` customers with statistics and rollups, relative to
    the bound parameter ``:now`` (a timestamptz). Deterministic (``setseed``).

    Each profile has a first-seen instant up to 400 days back and a last-seen one
    skewed to the recent past; 45% are buyers with an all-time ``Order Completed``
    row and one to three purchase days in the last 120 days (rollups).
    """
    return [
        "SELECT setseed(0.4242)",
        f"""
        CREATE TEMPORARY TABLE bench_people ON COMMIT DROP AS
        SELECT i,
               'sweep-' || lpad(i::text, 8, '0') AS customer_id,
               random() AS r1, random() AS r2, random() AS r3, random() AS r4
        FROM generate_series(1, {int(profiles)}) AS i
        """,
        """
        INSERT INTO segmenter.profiles
            (customer_id, traits, trait_times, first_seen_at, last_seen_at, version)
        SELECT customer_id,
               jsonb_build_object(
                   'plan', (ARRAY['free', 'free', 'pro', 'team'])[1 + i % 4],
                   'country', (ARRAY['US', 'CA', 'GB', 'DE', 'FR', 'BR'])[1 + i % 6],
                   'email', 'user' || i || '@example.com'),
               '{}'::jsonb,
               CAST(:now AS timestamptz) - r1 * interval '400 days',
               CAST(:now AS timestamptz) - r1 * r2 * r2 * interval '400 days',
               1
        FROM bench_people
        """,
        """
        INSERT INTO segmenter.event_stats
            (customer_id, event_name, count, value_sum, first_at, last_at)
        SELECT p.customer_id, 'Page Viewed', 1 + (b.r3 * 40)::int, 0,
               p.first_seen_at, p.last_seen_at
        FROM segmenter.profiles p JOIN bench_people b USING (customer_id)
        """,
        """
        INSERT INTO segmenter.event_stats
            (customer_id, event_name, count, value_sum, first_at, last_at)
        SELECT p.customer_id, 'Order Completed', 1 + (b.r4 * 8)::int, 20 + b.r4 * 400,
               p.first_seen_at,
               greatest(p.first_seen_at, CAST(:now AS timestamptz) - b.r4 * interval '120 days')
        FROM segmenter.profiles p JOIN bench_people b USING (customer_id)
        WHERE b.r3 < 0.45
        """,
        """
        INSERT INTO segmenter.event_rollups
            (customer_id, event_name, day, dimension, count, value_sum)
        SELECT DISTINCT ON (p.customer_id, day)
               p.customer_id, 'Order Completed', day, '', 1, 20 + b.r2 * 150
        FROM segmenter.profiles p
        JOIN bench_people b USING (customer_id)
        CROSS JOIN LATERAL (
            SELECT (CAST(:now AS timestamptz) AT TIME ZONE 'UTC')::date
                   - ((b.r4 * 120)::int + k * 17) % 120 AS day
            FROM generate_series(0, (b.r2 * 2)::int) AS k
        ) AS days
        WHERE b.r3 < 0.45
        """,
        "ANALYZE segmenter.profiles",
        "ANALYZE segmenter.event_stats",
        "ANALYZE segmenter.event_rollups",
    ]
