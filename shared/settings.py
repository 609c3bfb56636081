"""Settings shared by every service, read once from the environment.

Every variable starts with ``TENURE_``; a group and its field are joined by one
underscore (``TENURE_KAFKA_BOOTSTRAP_SERVERS``, ``TENURE_DATABASE_URL``).
``DATABASE_URL`` alone is honoured too, as most platforms set it.
"""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseModel):
    #: Kafka bootstrap servers, comma-separated
    bootstrap_servers: str = "127.0.0.1:9092"
    #: client id prefix
    client_id: str = "tenure"
    partitions: int = Field(default=6, ge=1, description="partition count for topics we create")
    #: replication factor of the topics we create (3 on a real cluster)
    replication_factor: int = Field(default=1, ge=1)
    #: idempotent producer: set true on Apache Kafka; off by default because the
    #: embedded broker cannot run InitProducerId (see CONVENTIONS.md)
    enable_idempotence: bool = False
    linger_ms: int = Field(
        default=0, ge=0, description="producer linger; batches form while a request is in flight"
    )
    #: producer batch size
    max_batch_bytes: int = Field(default=1_048_576, ge=16_384)
    #: Kafka request timeout
    request_timeout_ms: int = Field(default=10_000, ge=1_000)
    #: how long a publish waits for the broker's ack (a request then answers 503)
    publish_timeout_s: float = Field(default=10.0, gt=0)
    #: consumer group session timeout
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    #: a third of the session timeout; more often keeps an idle broker busy for nothing
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)


class DatabaseSettings(BaseModel):
    #: PostgreSQL URL; plain DATABASE_URL is used when this is unset
    url: SecretStr = SecretStr("postgresql+asyncpg://postgres@127.0.0.1:5432/tenure")
    #: connection pool size per process
    pool_size: int = Field(default=10, ge=1)
    #: PostgreSQL's JIT compiles a plan when its estimated cost is high, as set-based
    #: statements over thousands of rows often are; it then spends ~0.3 s compiling a
    #: statement that runs in ~1 s, every time. Off for our sessions unless asked for.
    jit: bool = False
    #: log SQL statements
    echo: bool = False
    #: the longest a statement of the service's sessions may run (API requests and
    #: consumers alike), in milliseconds; PostgreSQL cancels it then, so no request
    #: (``/v1/kpis/activity?from=9999-12-31``) can hold a backend for minutes. 0: none.
    statement_timeout_ms: int = Field(default=30_000, ge=0)
    #: the limit of a statement run inside :func:`shared.db.engine.long_statements`
    #: (background jobs: sweeps, recomputes, erasure); 0: none
    job_statement_timeout_ms: int = Field(default=600_000, ge=0)


class HttpSettings(BaseModel):
    #: listen address (0.0.0.0 in the image)
    host: str = "127.0.0.1"
    port: int | None = Field(
        default=None, ge=1, le=65535, description="listen port (default: the service's, 8001-8005)"
    )
    #: uvicorn worker processes (each consumes in the service's group: one per core)
    workers: int = Field(default=1, ge=1)
    #: largest request body a service's FastAPI routes read (shared/http/body_limit.py)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)


class OutboxSettings(BaseModel):
    #: how long the rows the outbox relay published are kept, in seconds, so that
    #: ``POST /v1/ops/replay?since=`` can publish them again after a broker lost them
    #: (0: kept not at all, no replay). An hour covers a broker restart and an operator
    #: answering a page; it costs a second write of each row and an hour of messages
    #: on disk.
    replay_window_s: float = Field(default=3600.0, ge=0, le=7 * 24 * 3600)

    @property
    def replay_window(self) -> timedelta:
        return timedelta(seconds=self.replay_window_s)


DEFAULT_MEMORY_TRIM_INTERVAL_S = 30.0


#: the secrets shipped in examples (docker-compose.yml before issue 21, docs): known to
#: everyone, so refused outside development — as values and as SHA-256 digests
KNOWN_DEV_SECRETS = (
    "dev-admin-token",
    "dev-write-key",
    "dev-link-secret-change-me-0123456789",
    "dev-console-session-secret-change-me-0123",
)
_KNOWN = {
    *KNOWN_DEV_SECRETS,
    *(hashlib.sha256(value.encode()).hexdigest() for value in KNOWN_DEV_SECRETS),
}


def known_dev_secrets(value: object, where: str = "") -> list[str]:
    """The settings (dotted names) in ``value`` holding a known development secret."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        parts = {part.strip().lower() for part in value.split(",")}
        return [where] if parts & _KNOWN else []
    if isinstance(value, BaseModel):
        found: list[str] = []
        for name in type(value).model_fields:
            found += known_dev_secrets(getattr(value, name), f"{where}_{name}" if where else name)
        return found
    return []


class AdminApiGroup(BaseModel):
    """The base of a service's own settings group: the tokens its admin API accepts."""

    #: SHA-256 hex digests of the admin bearer tokens, comma-separated.
    admin_token_hashes: str = ""

    @property
    def admin_token_digests(self) -> list[str]:
        return self.admin_token_hashes.split(",")


class ServiceSettings(BaseSettings):
    """Base class of every service's settings; subclasses add their own group."""

    model_config = SettingsConfigDict(
        env_prefix="TENURE_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
    )

    kafka: KafkaSettings = KafkaSettings()
    database: DatabaseSettings = DatabaseSettings()
    http: HttpSettings = HttpSettings()
    outbox: OutboxSettings = OutboxSettings()
    #: the least severe level logged
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: one JSON object per line, or text (what `tenure dev` sets)
    log_format: Literal["json", "text"] = "json"
    #: how often freed heap memory is returned to the OS (glibc ``malloc_trim``; 0: never)
    memory_trim_interval_s: float = Field(default=DEFAULT_MEMORY_TRIM_INTERVAL_S, ge=0)
    #: development only (``TENURE_DEV_MODE=1``): lets the known example secrets through
    dev_mode: bool = False

    @model_validator(mode="after")
    def _refuse_known_dev_secrets(self) -> Self:
        """Outside development, no setting may hold a secret everyone knows (the example
        admin token, write key or link secret, or their digests): a service configured
        with one refuses to start (docs/security.md says how to set your own)."""
        if self.dev_mode:
            return self
        found = known_dev_secrets(self)
        if found:
            names = ", ".join(f"TENURE_{name.upper()}" for name in found)
            raise ValueError(
                f"{names} holds a known development secret; set your own (see "
                "docs/security.md), or TENURE_DEV_MODE=1 for a development stack"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _plain_database_url(cls, data: Any) -> Any:
        """Fall back to the conventional ``DATABASE_URL`` when no TENURE_ one is set."""
        plain = os.environ.get("DATABASE_URL")
        if plain and isinstance(data, dict):
            database = data.setdefault("database", {})
            if isinstance(database, dict) and "url" not in database:
                database["url"] = plain
        return data
