"""The churn model's two snapshots, read set-based in SQL in one pass over the daily rollups.

For the boundary ``D`` (the start of a UTC day), a customer's features use the rollup days
before ``D`` only (dimension ``''``, kept for every activity event, all time), and
``profiles.first_seen_at`` for tenure:

- the churn event's occasions (days with it), days since its last and first occasion,
  and its mean value per occasion;
- days since the last day with any activity; events other than the churn event in the
  ``H`` days before ``D``; each configured engagement event's count in those days.

``training`` is as of ``D = today + 1 - H`` (customers first seen before it), labelled
``churned`` when the churn event is on none of the H days ``D .. today``; ``current`` is as
of ``D = today + 1`` (every profile first seen before it: scoring as of a past day leaves
out who came later), the snapshot the chosen model scores. Both come from
one ``GROUP BY customer_id`` with ``FILTER``ed aggregates; the rows travel as one array per
column (``array_agg`` over the same rows, so the arrays are aligned), so turning a million
customers into numpy arrays costs no Python loop per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.segmenter.scoring.churn import Snapshot

_PER_BOUNDARY = (
    "occ",
    "since_last",
    "since_first",
    "value",
    "since_seen",
    "recent",
    "tenure",
)


def boundaries(now: datetime, horizon_days: int) -> tuple[date, date]:
    """(training, current): the UTC day boundaries the snapshots are taken at."""
    current = now.astimezone(UTC).date() + timedelta(days=1)
    return current - timedelta(days=horizon_days), current


def _aggregates(tag: str, n_engagement: int) -> list[str]:
    d, since = f":d_{tag}", f":since_{tag}"
    event = "event_name = :event"
    cols = [
        f"count(*) FILTER (WHERE {event} AND day < {d})::float8 AS occ_{tag}",
        f"({d} - max(day) FILTER (WHERE {event} AND day < {d}))::float8 AS since_last_{tag}",
        f"({d} - min(day) FILTER (WHERE {event} AND day < {d}))::float8 AS since_first_{tag}",
        f"sum(value_sum) FILTER (WHERE {event} AND day < {d}) AS value_{tag}",
        f"({d} - max(day) FILTER (WHERE day < {d}))::float8 AS since_seen_{tag}",
        f"sum(count) FILTER (WHERE event_name <> :event AND day >= {since} AND day < {d})"
        f"::float8 AS recent_{tag}",
    ]
    cols += [
        f"sum(count) FILTER (WHERE event_name = :eng_{i} AND day >= {since} AND day < {d})"
        f"::float8 AS eng_{i}_{tag}"
        for i in range(n_engagement)
    ]
    return cols


def snapshot_sql(n_engagement: int) -> str:
    inner = ",\n        ".join(
        _aggregates("train", n_engagement)
        + _aggregates("now", n_engagement)
        + ["bool_or(event_name = :event AND day >= :d_train AND day < :d_now) AS stayed_train"]
    )
    columns = ["customer_id"]
    for tag in ("train", "now"):
        columns += [f"{name}_{tag}" for name in _PER_BOUNDARY if name != "tenure"]
        columns += [f"eng_{i}_{tag}" for i in range(n_engagement)]
    outer = ",\n    ".join(
        ["array_agg(p.customer_id) AS customer_id"]
        + [f"array_agg(coalesce(a.{c}, 'NaN')) AS {c}" for c in columns[1:]]
        + [
            "array_agg(extract(epoch FROM :at_train - p.first_seen_at) / 86400) AS tenure_train",
            "array_agg(extract(epoch FROM :at_now - p.first_seen_at) / 86400) AS tenure_now",
            "array_agg(coalesce(a.stayed_train, false)) AS stayed_train",
        ]
    )
    return f"""
    WITH agg AS (
        SELECT customer_id,
        {inner}
        FROM segmenter.event_rollups
        WHERE dimension = '' AND day < :d_now
        GROUP BY customer_id
    )
    SELECT
    {outer}
    FROM segmenter.profiles p LEFT JOIN agg a USING (customer_id)
    """


async def churn_snapshots(
    conn: AsyncConnection,
    *,
    event: str,
    horizon_days: int,
    engagement_events: Sequence[str],
    now: datetime,
) -> tuple[Snapshot, Snapshot]:
    """(training, current); see the module docstring. Read in one statement."""
    d_train, d_now = boundaries(now, horizon_days)
    h = timedelta(days=horizon_days)
    params: dict[str, Any] = {
        "event": event,
        "d_train": d_train,
        "d_now": d_now,
        "since_train": d_train - h,
        "since_now": d_now - h,
        "at_train": datetime.combine(d_train, datetime.min.time(), UTC),
        "at_now": datetime.combine(d_now, datetime.min.time(), UTC),
    }
    for i, name in enumerate(engagement_events):
        params[f"eng_{i}"] = name
    row = (await conn.execute(text(snapshot_sql(len(engagement_events))), params)).one()
    data = row._mapping
    ids: list[str] = list(data["customer_id"] or [])
    names = tuple(engagement_events)

    def arr(column: str) -> np.ndarray:
        values = data[column]
        return np.asarray(values if values is not None else [], dtype=np.float64)

    def build(tag: str, as_of: date, keep: np.ndarray | None) -> Snapshot:
        occ = np.nan_to_num(arr(f"occ_{tag}"), nan=0.0)
        since_last, since_first = arr(f"since_last_{tag}"), arr(f"since_first_{tag}")
        value = np.nan_to_num(arr(f"value_{tag}"), nan=0.0)
        tenure = np.maximum(arr(f"tenure_{tag}"), 0.0)
        seen = arr(f"since_seen_{tag}")
        engagement = (
            np.column_stack(
                [np.nan_to_num(arr(f"eng_{i}_{tag}"), nan=0.0) for i in range(len(names))]
            )
            if names
            else np.zeros((occ.size, 0))
        )
        churned = None
        if tag == "train":
            churned = ~np.asarray(data["stayed_train"] or [], dtype=np.bool_)
        snap = Snapshot(
            as_of=as_of,
            customer_ids=ids,
            days_since_event=since_last,
            since_first_event=since_first,
            first_to_last_event=np.nan_to_num(since_first - since_last, nan=0.0),
            occasions=occ,
            mean_value=np.divide(value, occ, out=np.zeros_like(value), where=occ > 0),
            tenure=tenure,
            days_since_seen=np.where(np.isnan(seen), tenure, seen),
            recent_events=np.nan_to_num(arr(f"recent_{tag}"), nan=0.0),
            engagement=engagement,
            engagement_names=names,
            churned=churned,
        )
        return snap if keep is None else snap.take(np.flatnonzero(keep))

    tenure_train = arr("tenure_train")
    training = build("train", d_train, tenure_train > 0)
    current = build("now", d_now, arr("tenure_now") > 0)
    return training, current
