"""Every service in ``tenure.services.SERVICES``, built and served the way ``tenure serve`` does.

Services follow one layout (``services/<name>/app.py`` with ``create_app()``,
``settings.py`` with a cached ``get_settings()``), so tests that must cover
every service, including those added later, build them from the environment:
``service_env`` gives the variables, :func:`serve_in_thread` runs one on loopback.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from tenure.embedded import free_port
from tenure.services import SERVICES

WRITE_KEY = "contract-write-key"
ADMIN_TOKEN = "contract-admin-token"


def service_env(name: str, *, bootstrap_servers: str, database_url: str) -> dict[str, str]:
    """Settings of service ``name``: the test servers, the write key and admin token."""
    from shared.auth import hash_token

    prefix = f"TENURE_{name.upper()}_"
    return {
        "TENURE_KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "TENURE_DATABASE_URL": database_url,
        "TENURE_LOG_LEVEL": "WARNING",
        f"{prefix}WRITE_KEY_HASHES": hash_token(WRITE_KEY),
        f"{prefix}ADMIN_TOKEN_HASHES": hash_token(ADMIN_TOKEN),
        f"{prefix}CONSUMER_GROUP": f"{name}-{uuid.uuid4().hex[:8]}",
        # services that sign links need a secret of at least 16 characters
        f"{prefix}LINK_SECRET": "contract-test-link-secret-0123456789",
    }


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def build_app(name: str) -> Any:
    """``create_app()`` of service ``name``, with settings read from the environment now."""
    settings = importlib.import_module(f"services.{name}.settings")
    settings.get_settings.cache_clear()
    module, _, factory = SERVICES[name].app_factory.partition(":")
    return getattr(importlib.import_module(module), factory)()


@contextmanager
def serve_in_thread(app: Any, ready_timeout_s: float = 60.0) -> Iterator[str]:
    """Serve ``app`` (its lifespan too) on loopback from a thread with its own event loop."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name=f"serve-{port}", daemon=True)
    thread.start()
    try:
        for _ in range(int(ready_timeout_s / 0.05)):
            if server.started:
                break
            if not thread.is_alive():
                raise RuntimeError("the server stopped while starting")
            threading.Event().wait(0.05)
        else:
            raise RuntimeError("the server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def run(coro: Any) -> Any:
    """Run a coroutine from synchronous test code."""
    return asyncio.run(coro)
