"""The metrics service: the consumer of every topic, the experiment evaluator, the
outbox relay of ``experiment.decisions`` (:mod:`.runtime`), the KPI API and the report
page (:mod:`.api`).

Every ``/v1`` endpoint needs ``Authorization: Bearer <admin token>``; ``/report``
is a static page that asks for the token and reads ``/v1/report`` with it.
"""

from __future__ import annotations

from fastapi import FastAPI

from services.metrics import api
from services.metrics.runtime import Runtime
from services.metrics.settings import MetricsSettings, get_settings
from shared.clock import Clock, utc_now
from shared.runtime import service_app


def create_app(settings: MetricsSettings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or get_settings()
    return service_app(
        title="Tenure metrics",
        description="Retention KPIs, messaging funnel, experiments and objectives.",
        settings=settings,
        clock=clock,
        admin_token_digests=settings.metrics.admin_token_digests,
        runtime=lambda: Runtime(settings, clock),
        install=api.install,
    )
