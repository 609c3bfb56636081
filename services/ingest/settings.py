"""Ingest settings: ``TENURE_INGEST_*`` beside the shared ``TENURE_KAFKA_*`` ones."""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel, Field

from shared.settings import ServiceSettings

DEFAULT_PORT = 8001


class IngestGroup(BaseModel):
    #: SHA-256 hex digests of the accepted write keys, comma-separated.
    write_key_hashes: str = ""
    max_event_bytes: int = Field(default=32 * 1024, ge=1024)
    max_batch_bytes: int = Field(default=500 * 1024, ge=1024)
    retry_after_s: int = Field(default=5, ge=1)

    @property
    def write_key_digests(self) -> list[str]:
        return self.write_key_hashes.split(",")


class IngestSettings(ServiceSettings):
    ingest: IngestGroup = IngestGroup()


@lru_cache
def get_settings() -> IngestSettings:
    return IngestSettings()
