"""Console settings: ``TENURE_CONSOLE_*`` beside the shared ones.

The console keeps no state: it needs the five services' URLs, the digests of the admin
tokens it lets sign in, and the secret its session cookies are sealed with. It uses no
broker and no database (the shared ``TENURE_KAFKA_*`` / ``TENURE_DATABASE_*`` are ignored).
"""

from __future__ import annotations

import logging
import secrets
from functools import lru_cache

from pydantic import BaseModel, Field, SecretStr, field_validator

from shared.settings import ServiceSettings

DEFAULT_PORT = 8006
#: the upstream services, in the order the console shows them
UPSTREAMS = ("ingest", "segmenter", "journey", "dispatcher", "metrics")

log = logging.getLogger(__name__)


class ConsoleGroup(BaseModel):
    #: SHA-256 hex digests of the admin tokens allowed to sign in, comma-separated: the
    #: same tokens the services accept (the console forwards the token as their bearer)
    admin_token_hashes: str = ""
    #: seals the session cookie (at least 32 characters, the same on every replica);
    #: empty: a random secret per process (sessions end with the process, and several
    #: workers or replicas cannot share them)
    session_secret: SecretStr = SecretStr("")
    #: how long a sign-in lasts
    session_max_age_s: int = Field(default=8 * 3600, ge=60, le=30 * 24 * 3600)
    #: mark the cookie ``Secure`` (sent over HTTPS only): set it when served behind TLS
    secure_cookie: bool = False
    #: where the console reaches ingest's admin API
    ingest_url: str = "http://127.0.0.1:8001"
    #: where the console reaches the segmenter's admin API
    segmenter_url: str = "http://127.0.0.1:8002"
    #: where the console reaches the journey's admin API
    journey_url: str = "http://127.0.0.1:8003"
    #: where the console reaches the dispatcher's admin API
    dispatcher_url: str = "http://127.0.0.1:8004"
    #: where the console reaches the metrics admin API
    metrics_url: str = "http://127.0.0.1:8005"
    #: the longest one call to a service may take
    upstream_timeout_s: float = Field(default=10.0, gt=0, le=120)

    @field_validator("session_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and len(value.get_secret_value()) < 32:
            raise ValueError("the session secret must be at least 32 characters")
        return value

    @property
    def admin_token_digests(self) -> list[str]:
        return self.admin_token_hashes.split(",")

    def upstream_urls(self) -> dict[str, str]:
        return {name: getattr(self, f"{name}_url").rstrip("/") for name in UPSTREAMS}

    def session_key(self) -> str:
        given = self.session_secret.get_secret_value()
        if given:
            return given
        log.warning(
            "TENURE_CONSOLE_SESSION_SECRET is not set: sessions use a random secret of this "
            "process (they end when it stops, and other workers cannot read them)"
        )
        return secrets.token_urlsafe(48)


class ConsoleSettings(ServiceSettings):
    console: ConsoleGroup = ConsoleGroup()


@lru_cache
def get_settings() -> ConsoleSettings:
    return ConsoleSettings()
