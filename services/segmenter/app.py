"""The segmenter's service: the ``customer.events`` consumer, the timer sweep, the
score refits, the outbox relay (:mod:`.runtime`), and the admin HTTP API for
segments, profiles, suppressions and scores (:mod:`.api`, each route calling
:mod:`.admin`).

Every endpoint but the operational ones needs ``Authorization: Bearer <admin token>``.
"""

from __future__ import annotations

from fastapi import FastAPI

from services.segmenter import api
from services.segmenter.runtime import Runtime
from services.segmenter.settings import SegmenterSettings, get_settings
from shared.clock import Clock, utc_now
from shared.runtime import service_app


def create_app(settings: SegmenterSettings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or get_settings()
    return service_app(
        title="Tenure segmenter",
        description="Customer profiles, segments, churn risk and lifetime value.",
        settings=settings,
        clock=clock,
        admin_token_digests=settings.segmenter.admin_token_digests,
        runtime=lambda: Runtime(settings, clock),
        install=api.install,
    )
