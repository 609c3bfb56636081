"""What ingest runs on, built in the app's lifespan: the publisher, the write keys and
the rate limiter, and the one way events leave (:meth:`Runtime.publish`)."""

from __future__ import annotations

import math
import time
from functools import partial

from fastapi import FastAPI

from services.ingest.metrics import EVENTS_RECEIVED, EVENTS_REJECTED, PUBLISH_SECONDS, RATE_LIMITED
from services.ingest.settings import IngestSettings
from shared.auth import TokenDigests, hash_token
from shared.errors import PublishError
from shared.events.customer_events import CustomerEvent, EventType
from shared.events.registry import CUSTOMER_EVENTS
from shared.http.app import add_readiness_check
from shared.http.problems import RateLimited, Unauthorized, Unavailable
from shared.kafka.producer import EventPublisher

#: one counter child per call type, looked up once rather than per event
_RECEIVED = {t: EVENTS_RECEIVED.labels(t.value) for t in EventType}


class Runtime:
    """Owns the publisher; :meth:`start` and :meth:`stop` bracket the app's life."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.limits = settings.ingest
        self.publisher = EventPublisher(settings.kafka, client_id="tenure-ingest")
        self.write_keys = TokenDigests(settings.ingest.write_key_digests)
        self.rate_limiter = settings.ingest.rate_limiter()

    async def start(self, app: FastAPI) -> None:
        await self.publisher.start()
        add_readiness_check(
            app, "broker", partial(self.publisher.check_ready, (CUSTOMER_EVENTS.name,))
        )

    async def stop(self) -> None:
        await self.publisher.stop()

    def check_key(self, write_key: str) -> None:
        """401 unless ``write_key`` is one of the configured keys."""
        if not self.write_keys.accepts(write_key):
            raise unauthorized("the write key is not valid")

    def admit(self, write_key: str, events: int) -> None:
        """Take ``events`` tokens from the key's bucket, or answer 429 with Retry-After."""
        limiter = self.rate_limiter
        if not limiter.enabled:
            return
        digest = hash_token(write_key)
        wait_s = limiter.take(digest, events)
        if wait_s is None:
            return
        RATE_LIMITED.labels(digest[:8]).inc()
        retry_after = max(1, math.ceil(wait_s))
        raise RateLimited(
            f"this write key's rate limit is exhausted; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
            retry_after_s=retry_after,
        )

    async def publish(self, events: list[CustomerEvent]) -> None:
        """Store the events on ``customer.events`` (acks=all), written by the topic's
        encoder; 503 with Retry-After when the broker did not acknowledge."""
        started = time.perf_counter()
        messages = [CUSTOMER_EVENTS.message(event) for event in events]
        try:
            await self.publisher.publish_many(messages)
        except PublishError as exc:
            for call_type, count in _count_types(events).items():
                EVENTS_REJECTED.labels(call_type.value, "broker_unavailable").inc(count)
            raise Unavailable(
                f"the events were not stored, retry later: {exc}",
                code="broker_unavailable",
                headers={"Retry-After": str(self.limits.retry_after_s)},
            ) from None
        PUBLISH_SECONDS.observe(time.perf_counter() - started)
        for call_type, count in _count_types(events).items():
            _RECEIVED[call_type].inc(count)


def unauthorized(detail: str) -> Unauthorized:
    return Unauthorized(detail, headers={"WWW-Authenticate": 'Basic realm="tenure"'})


def _count_types(events: list[CustomerEvent]) -> dict[EventType, int]:
    counts: dict[EventType, int] = {}
    for event in events:
        counts[event.type] = counts.get(event.type, 0) + 1
    return counts
