"""The dispatcher's parts on a :class:`~shared.runtime.ServiceRuntime`: the
``dispatch.requests`` / ``profiles`` consumer, the sends in flight, the deferral sweep,
the expiry of interrupted sends and the outbox relay; and what the routes use (the
engine, the clock, the link signer, the composer, the dispatcher)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import httpx

from services.dispatcher.channels.base import Provider
from services.dispatcher.compose import Composer
from services.dispatcher.consumer import DECODERS, DispatcherBatchHandler, is_transient
from services.dispatcher.dispatching import Dispatcher, RetryPolicy, SendsInFlight
from services.dispatcher.links import LinkSigner
from services.dispatcher.models import deferrals, outbox, outbox_relayed
from services.dispatcher.providers import build_providers
from services.dispatcher.settings import DispatcherSettings
from shared.clock import Clock
from shared.db.timers import TimerSweep, Watched
from shared.events.channels import Channel
from shared.runtime import OutboxParts
from shared.stopping import PeriodicJob


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
        parts = OutboxParts.build(
            "dispatcher", settings, outbox, relayed=outbox_relayed, clock=clock
        )
        self.engine, self.publisher, self.relay = parts.engine, parts.publisher, parts.relay
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
        self.composer = Composer(
            self.signer, offer_keys=group.offer_key_map, offer_key_id=group.offer_key_id
        )
        self.dispatcher = Dispatcher(
            engine=self.engine,
            providers=self.providers,
            composer=self.composer,
            clock=clock,
            on_commit=self.relay.notify,
            send_concurrency=group.send_concurrency,
            retry=RetryPolicy(group.retry_attempts, group.retry_initial_s, group.retry_max_s),
            webhook_default=settings.webhook.url,
            batches_sending=group.batches_sending,
            profile_wait=timedelta(seconds=group.profile_wait_s),
            record_linger_s=group.record_linger_ms / 1000,
        )
        self.service = parts.service()
        self.runner = self.service.kafka_consumer(
            kafka=settings.kafka,
            group=group,
            decoders=DECODERS,
            handler=DispatcherBatchHandler(engine=self.engine, dispatcher=self.dispatcher),
            is_transient=is_transient,
            fetch_max_wait_ms=group.fetch_max_wait_ms,
        )
        # declared first: on shutdown it waits for the sends of the last batches
        self.service.loop("sends in flight", SendsInFlight(self.dispatcher))
        self.service.loop(
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
        self.service.loop(
            "interrupted sends",
            PeriodicJob(
                lambda: self.dispatcher.expire_interrupted(lease_s=group.sending_lease_s),
                name="expiring interrupted sends",
                interval_s=min(60.0, group.sending_lease_s),
            ),
        )
        self.service.closing("http client", self.http.aclose)
        for name, provider in self.providers.items():
            self.service.closing(f"{name} provider", provider.close)
