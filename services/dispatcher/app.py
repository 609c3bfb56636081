"""The dispatcher's service: the ``dispatch.requests`` / ``profiles`` consumer, the
deferral sweep and the outbox relay (:mod:`.runtime`); the public tracking endpoints
(``/t/…``, no token) and the admin API (``/v1/…``, ``Authorization: Bearer <admin
token>``) in :mod:`.api`."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI

from services.dispatcher import api
from services.dispatcher.channels.base import Provider
from services.dispatcher.runtime import Runtime
from services.dispatcher.settings import DispatcherSettings, get_settings
from shared.clock import Clock, utc_now
from shared.events.channels import Channel
from shared.runtime import service_app


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
    return service_app(
        title="Tenure dispatcher",
        description="Personalised email, push and social messages with consent, caps, "
        "quiet hours, tracking and surveys.",
        settings=settings,
        clock=clock,
        admin_token_digests=settings.dispatcher.admin_token_digests,
        runtime=lambda: Runtime(settings, clock, providers),
        install=api.install,
        tuned_for_throughput=False,
    )
