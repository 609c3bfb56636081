"""Set-based reads and writes of the segmenter's tables, one module per kind of row.

Every function takes many rows at once where it can and runs inside the caller's
transaction (an ``AsyncConnection`` from ``engine.begin()``); none commits. Statements
on the event path run once per consumed batch with thousands of rows: they pass whole
columns as arrays straight to asyncpg (:mod:`shared.db.driver`).

The functions are re-exported here: callers write ``repo.load_profiles(...)``; the
recommendations' and loyalty's stores (:mod:`.recommendations`, :mod:`.loyalty`) are
read as modules, their names being generic (``erase``, ``history``).
"""

from __future__ import annotations

from services.segmenter.repository.aliases import (
    merged_or_suppressed,
    move_activity,
    record_alias,
    reserve_profiles,
    resolve_aliases,
)
from services.segmenter.repository.erasure import (
    ERASURE_LOCK,
    erase_customer,
    hold_off_erasures,
)
from services.segmenter.repository.memberships import (
    add_memberships,
    load_memberships,
    remove_memberships,
    set_timers,
)
from services.segmenter.repository.outbox import (
    enqueue,
    profiles_changed_since,
    publish_profiles,
)
from services.segmenter.repository.profiles import (
    add_event_stats,
    add_rollups,
    bump_versions,
    delete_profiles,
    load_event_stats,
    load_profiles,
    load_profiles_and_scores,
    load_rollups,
    load_scores,
    upsert_profiles,
)
from services.segmenter.repository.reads import (
    aliases_of,
    event_stats_of,
    matching_profiles,
    memberships_of,
    profile_row,
)
from services.segmenter.repository.segments import (
    BackfillState,
    chunk_end,
    get_segment,
    list_segments,
    load_active_segments,
    lock_segment,
    lock_segment_backfill,
    member_counts,
    members_page,
    record_backfill_progress,
    retire_segment,
    save_segment_version,
    segment_exists,
    segment_history,
    segments_stamp,
    unfinished_backfills,
)
from services.segmenter.repository.suppressions import (
    lift_suppression,
    suppress,
    suppressed_among,
    suppression,
    suppressions_page,
)

__all__ = [
    "BackfillState",
    "ERASURE_LOCK",
    "add_event_stats",
    "add_memberships",
    "add_rollups",
    "aliases_of",
    "bump_versions",
    "chunk_end",
    "delete_profiles",
    "enqueue",
    "erase_customer",
    "event_stats_of",
    "get_segment",
    "hold_off_erasures",
    "lift_suppression",
    "list_segments",
    "load_active_segments",
    "load_event_stats",
    "load_memberships",
    "load_profiles",
    "load_profiles_and_scores",
    "load_rollups",
    "load_scores",
    "lock_segment",
    "lock_segment_backfill",
    "matching_profiles",
    "member_counts",
    "members_page",
    "memberships_of",
    "merged_or_suppressed",
    "move_activity",
    "profile_row",
    "profiles_changed_since",
    "publish_profiles",
    "record_alias",
    "record_backfill_progress",
    "remove_memberships",
    "reserve_profiles",
    "resolve_aliases",
    "retire_segment",
    "save_segment_version",
    "segment_exists",
    "segment_history",
    "segments_stamp",
    "set_timers",
    "suppress",
    "suppressed_among",
    "suppression",
    "suppressions_page",
    "unfinished_backfills",
    "upsert_profiles",
]
