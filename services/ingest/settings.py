"""Ingest settings: ``TENURE_INGEST_*`` beside the shared ``TENURE_KAFKA_*`` ones."""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel, Field, field_validator

from services.ingest.ratelimit import Limit, RateLimiter
from shared.settings import ServiceSettings

DEFAULT_PORT = 8001


class IngestGroup(BaseModel):
    #: SHA-256 hex digests of the accepted write keys, comma-separated.
    write_key_hashes: str = ""
    #: the largest single event accepted, in bytes
    max_event_bytes: int = Field(default=32 * 1024, ge=1024)
    #: the largest /v1/batch or /v1/import body accepted, in bytes
    max_batch_bytes: int = Field(default=500 * 1024, ge=1024)
    #: the Retry-After a 429 or 503 answer suggests, in seconds
    retry_after_s: int = Field(default=5, ge=1)
    #: events a second each write key may send to this process, as ``rate`` or
    #: ``rate/burst`` (see services/ingest/ratelimit.py); empty: no default limit
    rate_limit: str = ""
    #: per-key limits, ``<sha256 digest>=rate[/burst]`` comma-separated; ``none``
    #: exempts a key from the default
    rate_limits: str = ""

    @property
    def write_key_digests(self) -> list[str]:
        return self.write_key_hashes.split(",")

    @field_validator("rate_limit")
    @classmethod
    def _valid_limit(cls, value: str) -> str:
        if value.strip():
            Limit.parse(value.strip())
        return value

    @field_validator("rate_limits")
    @classmethod
    def _valid_limits(cls, value: str) -> str:
        _parse_limits(value)
        return value

    def rate_limiter(self) -> RateLimiter:
        default = Limit.parse(self.rate_limit.strip()) if self.rate_limit.strip() else None
        return RateLimiter(default, _parse_limits(self.rate_limits))


def _parse_limits(text: str) -> dict[str, Limit | None]:
    limits: dict[str, Limit | None] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        digest, sep, limit = item.partition("=")
        if not sep or len(digest.strip()) != 64:
            raise ValueError(f"expected <sha256 hex digest>=rate[/burst], not {item!r}")
        limit = limit.strip()
        limits[digest.strip().lower()] = None if limit == "none" else Limit.parse(limit)
    return limits


class IngestSettings(ServiceSettings):
    ingest: IngestGroup = IngestGroup()


@lru_cache
def get_settings() -> IngestSettings:
    return IngestSettings()
