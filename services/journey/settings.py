"""Journey settings: ``TENURE_JOURNEY_*`` beside the shared ones."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr

from shared.settings import AdminApiGroup, ServiceSettings

DEFAULT_PORT = 8003


class JourneyGroup(AdminApiGroup):
    #: Kafka consumer group of the journey's consumer (replicas share it)
    consumer_group: str = "tenure-journey"
    #: the most records applied in one transaction
    max_batch_records: int = Field(default=2_000, ge=1)
    #: how long the broker may hold a fetch while it has no data: the latency a trigger
    #: can wait before the consumer sees it (aiokafka's default is 500 ms)
    fetch_max_wait_ms: int = Field(default=50, ge=1, le=500)
    #: the longest the timer sweep sleeps; it wakes when the next timer is due, or when a
    #: sooner one is set (shared/db/timers.py)
    sweep_interval_s: float = Field(default=60.0, gt=0)
    #: timers per sweep transaction
    sweep_chunk: int = Field(default=1_000, ge=1)
    #: sweep loops per process, each on a database connection of its own
    sweep_workers: int = Field(default=2, ge=1, le=16)
    #: how often other replicas' journey edits are looked for
    catalog_poll_s: float = Field(default=1.0, gt=0)
    #: a dispatch request with no final outcome after this long is requested again (the
    #: same ``dispatch_id``), then after twice as long each time (at most 6 h): a
    #: request or an outcome the broker lost delays, never drops
    outcome_wait_s: float = Field(default=900.0, gt=0)
    #: how often the watch of dispatch requests looks for due ones
    watch_interval_s: float = Field(default=5.0, gt=0)
    #: claimed message ids are kept this long for deduplication
    dedup_retention_days: int = Field(default=7, ge=1)
    #: the most a simulation may walk (virtual days after the first input)
    simulate_max_days: int = Field(default=400, ge=1)
    #: the segmenter's base URL: publishing checks that every segment named exists
    #: (empty: not checked)
    segmenter_url: str = ""
    #: the dispatcher's base URL: publishing checks that every template (and pinned
    #: version) named exists (empty: not checked)
    dispatcher_url: str = ""
    #: the admin token the journey presents to the segmenter and the dispatcher
    peer_token: SecretStr = SecretStr("")


class JourneySettings(ServiceSettings):
    journey: JourneyGroup = JourneyGroup()


@lru_cache
def get_settings() -> JourneySettings:
    return JourneySettings()
