"""Run one service in the foreground with uvicorn (what ``tenure serve NAME`` does).

uvicorn installs the SIGTERM/SIGINT handlers; on either it stops accepting
requests and runs the app's lifespan shutdown, which stops consumers after
their batch is committed, then closes producers and engines.
"""

from __future__ import annotations

import importlib
import os

import uvicorn
from fastapi import FastAPI

from shared.logging import configure_logging
from shared.settings import ServiceSettings
from tenure.services import SERVICES

_SERVICE_ENV = "TENURE_SERVICE"


def app_factory() -> FastAPI:
    """Build the app named by ``$TENURE_SERVICE``, in each uvicorn worker process."""
    spec = SERVICES[os.environ[_SERVICE_ENV]]
    settings = ServiceSettings()
    configure_logging(service=spec.name, level=settings.log_level, fmt=settings.log_format)
    module_name, _, attr = spec.app_factory.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    app: FastAPI = factory()
    return app


def serve(name: str) -> None:
    spec = SERVICES[name]
    settings = ServiceSettings()
    os.environ[_SERVICE_ENV] = name
    workers = settings.http.workers
    if workers > 1:
        _prepare_multiprocess_metrics(name)
    configure_logging(service=name, level=settings.log_level, fmt=settings.log_format)
    uvicorn.run(
        "tenure.serve:app_factory",
        factory=True,
        host=settings.http.host,
        port=settings.http.port or spec.port,
        workers=workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
    )


def _prepare_multiprocess_metrics(name: str) -> None:
    """Several workers share one /metrics through prometheus_client's multiprocess mode."""
    import tempfile

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"tenure-{name}-prom-")
