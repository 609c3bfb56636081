"""The dispatcher's service: the ``dispatch.requests`` / ``profiles`` consumer, the
deferral sweep, the outbox relay, the public tracking endpoints (``/t/…``, no token)
and the admin API (``/v1/…``, ``Authorization: Bearer <admin token>``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime

import httpx
from fastapi import FastAPI

from services.dispatcher.admin import router as admin_router
from services.dispatcher.channels.base import Provider
from services.dispatcher.consumer import DispatcherBatchHandler, is_transient
from services.dispatcher.dispatching import Dispatcher, RetryPolicy, SendsInFlight, utc_now
from services.dispatcher.links import LinkSigner
from services.dispatcher.models import deferrals, outbox
from services.dispatcher.offers.api import router as offers_router
from services.dispatcher.providers import build_providers
from services.dispatcher.settings import DispatcherSettings, get_settings
from services.dispatcher.tracking import router as tracking_router
from shared.auth import TokenDigests
from shared.db.engine import create_engine
from shared.db.outbox import OutboxRelay
from shared.db.timers import TimerSweep, Watched
from shared.events.channels import Channel
from shared.events.dispatch_requests import TOPIC as REQUESTS
from shared.events.dispatch_requests import DispatchRequest
from shared.events.profiles import TOPIC as PROFILES
from shared.events.profiles import ProfileUpdate
from shared.http.app import create_service_app
from shared.kafka.consumer import ConsumerRunner
from shared.kafka.dlq import DeadLetterPolicy
from shared.kafka.producer import EventPublisher
from shared.runtime import ServiceRuntime
from shared.stopping import PeriodicJob

Clock = Callable[[], datetime]


class Runtime:
    """What the lifespan builds and the routes use."""

    def __init__(
        self,
        settings: DispatcherSettings,
        clock: Clock,
        providers: Mapping[Channel, Provider] | None = None,
    ) -> None:
        group = settings.dispatcher
        self.settings = settings
        self.clock = clock
        self.engine = create_engine(settings.database)
        self.publisher = EventPublisher(settings.kafka, client_id="tenure-dispatcher")
        self.relay = OutboxRelay(engine=self.engine, outbox=outbox, publisher=self.publisher)
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=5.0),
            limits=httpx.Limits(
                max_connections=group.http_connections,
                max_keepalive_connections=group.http_connections,
            ),
        )
        self.providers = (
            dict(providers) if providers is not None else build_providers(settings, self.http)
        )
        self.signer = LinkSigner(
            secret=group.link_secret.get_secret_value(), base_url=group.public_base_url
        )
        self.dispatcher = Dispatcher(
            engine=self.engine,
            providers=self.providers,
            signer=self.signer,
            clock=clock,
            on_commit=self.relay.notify,
            send_concurrency=group.send_concurrency,
            retry=RetryPolicy(group.retry_attempts, group.retry_initial_s, group.retry_max_s),
            webhook_default=settings.webhook.url,
            batches_sending=group.batches_sending,
            offer_keys=group.offer_key_map,
            offer_key_id=group.offer_key_id,
        )
        self.services = ServiceRuntime(
            "dispatcher", engine=self.engine, publisher=self.publisher, relay=self.relay
        )
        self.runner = self.services.consumer(
            "consumer",
            ConsumerRunner(
                settings=settings.kafka,
                group_id=group.consumer_group,
                decoders={
                    REQUESTS: DispatchRequest.from_bytes,
                    PROFILES: ProfileUpdate.from_bytes,
                },
                handler=DispatcherBatchHandler(engine=self.engine, dispatcher=self.dispatcher),
                dead_letters=DeadLetterPolicy(self.publisher),
                is_transient=is_transient,
                max_records=group.max_batch_records,
            ),
        )
        # declared first: on shutdown it waits for the sends of the last batches
        self.services.loop("sends in flight", SendsInFlight(self.dispatcher))
        self.services.loop(
            "deferrals",
            TimerSweep(
                lambda: self.dispatcher.fire_due(limit=group.sweep_chunk),
                chunk=group.sweep_chunk,
                workers=group.sweep_workers,
                interval_s=group.sweep_interval_s,
                name="deferral sweep",
                watched=Watched(self.engine, deferrals, self.clock),
            ),
        )
        self.services.loop(
            "interrupted sends",
            PeriodicJob(
                lambda: self.dispatcher.expire_interrupted(lease_s=group.sending_lease_s),
                name="expiring interrupted sends",
                interval_s=min(60.0, group.sending_lease_s),
            ),
        )
        self.services.closing("http client", self.http.aclose)
        for name, provider in self.providers.items():
            self.services.closing(f"{name} provider", provider.close)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime = Runtime(app.state.settings, app.state.clock, app.state.providers)
    app.state.runtime = runtime
    async with runtime.services.running(app):
        yield


def create_app(
    settings: DispatcherSettings | None = None,
    *,
    clock: Clock = utc_now,
    providers: Mapping[Channel, Provider] | None = None,
) -> FastAPI:
    """The app; ``providers`` replaces the configured ones (tests, benchmarks)."""
    settings = settings or get_settings()
    if len(settings.dispatcher.link_secret.get_secret_value()) < 16:
        raise ValueError(
            "set TENURE_DISPATCHER_LINK_SECRET (at least 16 characters, the same on every "
            "replica): it signs the tracking and unsubscribe links"
        )
    app = create_service_app(
        title="Tenure dispatcher",
        description="Personalised email, push and social messages with consent, caps, "
        "quiet hours, tracking and surveys.",
        version="1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.providers = providers
    app.state.admin_tokens = TokenDigests(settings.dispatcher.admin_token_digests)
    app.include_router(tracking_router)
    app.include_router(admin_router)
    app.include_router(offers_router)
    return app
