"""Segmenter settings: ``TENURE_SEGMENTER_*`` beside the shared ones."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field

from shared.events import engagement
from shared.settings import AdminApiGroup, ServiceSettings

DEFAULT_PORT = 8002
#: the engagement events whose counts feed the learned churn model when they exist (all
#: zeros otherwise, which costs nothing): app sessions (Segment's mobile spec) and the
#: dispatcher's opens and clicks (:mod:`shared.events.engagement`)
DEFAULT_ENGAGEMENT_EVENTS = (
    "Application Opened",
    engagement.EMAIL_OPENED,
    engagement.PUSH_OPENED,
    engagement.EMAIL_LINK_CLICKED,
    engagement.MESSAGE_CLICKED,
)


class SegmenterGroup(AdminApiGroup):
    #: Kafka consumer group of the segmenter's consumer (replicas share it)
    consumer_group: str = "tenure-segmenter"
    #: the most records applied in one transaction
    max_batch_records: int = Field(default=5_000, ge=1)
    #: the track event whose ``revenue`` (else ``value``) is a purchase, for churn and LTV
    purchase_event: str = "Order Completed"
    #: the longest the membership sweep sleeps; it wakes when the next timer is due, or
    #: when a sooner one is set (shared/db/timers.py)
    sweep_interval_s: float = Field(default=60.0, gt=0)
    #: customers re-evaluated per statement by the membership sweep
    sweep_chunk: int = Field(default=50_000, ge=100)
    #: sweep loops per replica, each on a database connection of its own
    sweep_workers: int = Field(default=2, ge=1, le=16)
    #: how often the churn / LTV models are refitted (0 = only on demand)
    refit_interval_s: float = Field(default=6 * 3600, ge=0)
    #: profiles per backfill transaction: a batch writing a membership of a segment being
    #: backfilled, or an erasure, waits for at most one such chunk
    backfill_chunk: int = Field(default=50_000, ge=100)
    #: how often to look for segments whose backfill never finished (0: only at start)
    backfill_resume_interval_s: float = Field(default=300.0, ge=0)
    #: churn is "no <churn_event> within churn_horizon_days days"; empty: the purchase event
    churn_event: str = ""
    #: days without activity after which a customer counts as churned, for the churn model's labels
    churn_horizon_days: int = Field(default=90, ge=1, le=3650)
    #: events whose counts over the last churn_horizon_days feed the learned churn model
    churn_engagement_events: list[str] = Field(
        default=list(DEFAULT_ENGAGEMENT_EVENTS), max_length=20
    )
    #: predicted LTV: expected purchases over this many days x expected spend
    ltv_horizon_days: float = Field(default=365.0, gt=0, le=3650)
    #: yearly rate each 30-day step of LTV is discounted at (0: undiscounted)
    ltv_annual_discount_rate: float = Field(default=0.0, ge=0, lt=1)
    #: processed messageIds are kept this long for deduplication
    dedup_retention_days: int = Field(default=7, ge=1)

    #: recommendations: how often they are recomputed (0: only on demand), how many per
    #: customer, the similarity (cosine or lift), the half-life of an interaction's weight
    recommend_interval_s: float = Field(default=24 * 3600, ge=0)
    #: recommendations kept per customer
    recommend_top_n: int = Field(default=10, ge=1, le=50)
    #: item-item similarity of the recommender: cosine, or lift over chance
    recommend_similarity: Literal["cosine", "lift"] = "cosine"
    #: half-life of a purchase's or view's weight in the recommender, in days
    recommend_half_life_days: float = Field(default=90.0, gt=0, le=3650)
    #: the event whose `product_id` counts as a product view
    recommend_view_event: str = "Product Viewed"
    #: how often every loyalty balance and tier is recomputed (expiries; 0: on demand)
    loyalty_refresh_interval_s: float = Field(default=24 * 3600, ge=0)


class SegmenterSettings(ServiceSettings):
    segmenter: SegmenterGroup = SegmenterGroup()


@lru_cache
def get_settings() -> SegmenterSettings:
    return SegmenterSettings()
