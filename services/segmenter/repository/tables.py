"""The segmenter's tables as Core ``Table`` objects, for the repository modules."""

from __future__ import annotations

from services.segmenter.models import (
    Alias,
    EventRollup,
    EventStat,
    Membership,
    Profile,
    Segment,
    SegmentVersion,
    Suppression,
)
from shared.db.tables import table_of

profiles = table_of(Profile)
event_stats = table_of(EventStat)
event_rollups = table_of(EventRollup)
aliases = table_of(Alias)
memberships = table_of(Membership)
segments = table_of(Segment)
segment_versions = table_of(SegmentVersion)
suppressions = table_of(Suppression)
