"""Dispatcher settings: ``TENURE_DISPATCHER_*`` and one group per provider
(``TENURE_SMTP_*``, ``TENURE_FCM_*``, ``TENURE_WEBPUSH_*``, ``TENURE_WHATSAPP_*``,
``TENURE_MESSENGER_*``, ``TENURE_WEBHOOK_*``) beside the shared ones."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr

from services.dispatcher.channels.email import SmtpSettings
from services.dispatcher.channels.http import (
    FcmSettings,
    MessengerSettings,
    WebhookSettings,
    WebPushSettings,
    WhatsAppSettings,
)
from shared.settings import AdminApiGroup, ServiceSettings

DEFAULT_PORT = 8004


class DispatcherGroup(AdminApiGroup):
    #: Kafka consumer group of the dispatcher's consumer (replicas share it)
    consumer_group: str = "tenure-dispatcher"
    #: the most dispatch requests decided in one transaction
    max_batch_records: int = Field(default=1_000, ge=1)
    #: how long the broker may hold a fetch while it has no data: the latency a request
    #: can wait before the consumer sees it (aiokafka's default is 500 ms)
    fetch_max_wait_ms: int = Field(default=50, ge=1, le=500)
    #: where the public tracking endpoints are reached from a customer's mail client
    public_base_url: str = "http://127.0.0.1:8004"
    #: signs tracking links (at least 16 characters; every replica the same)
    link_secret: SecretStr = SecretStr("")
    #: provider calls in flight at once per process
    send_concurrency: int = Field(default=256, ge=1, le=10_000)
    #: consumed batches whose sends may be in flight at once (the next batch is decided
    #: while one is being sent)
    batches_sending: int = Field(default=2, ge=1, le=16)
    #: how long a finished send waits for others to be recorded in the same
    #: transaction (services/dispatcher/recording.py): latency against transactions
    record_linger_ms: float = Field(default=20.0, ge=0, le=1_000)
    #: HTTP connections kept open to each push / social provider
    http_connections: int = Field(default=32, ge=1, le=1_000)
    #: tries of a provider call on transient errors, with exponential backoff and jitter
    retry_attempts: int = Field(default=4, ge=1, le=20)
    #: first backoff of a retried provider call, in seconds
    retry_initial_s: float = Field(default=0.2, gt=0)
    #: longest backoff between tries of a provider call, in seconds
    retry_max_s: float = Field(default=5.0, gt=0)
    #: a send still unrecorded after this long was cut short by a crash: failed, not resent
    sending_lease_s: float = Field(default=600.0, gt=0)
    #: the most a request waits for the profile copy to reach its trigger (Freshness);
    #: past it, it is decided on what the copy holds
    profile_wait_s: float = Field(default=600.0, ge=0)
    #: the longest the deferral sweep sleeps: it sleeps until the next deferral is due,
    #: and a sooner one wakes it (PostgreSQL NOTIFY, shared/db/timers.py)
    sweep_interval_s: float = Field(default=60.0, gt=0)
    #: concurrent workers of the deferral sweep
    sweep_workers: int = Field(default=1, ge=1, le=16)
    #: deferred requests claimed per statement by the sweep
    sweep_chunk: int = Field(default=500, ge=1)
    #: keys of signed offer codes, ``<id>:<secret>`` comma-separated (ids 0–7; verifiers
    #: hold every key still in use), and the id new codes are signed with
    offer_keys: SecretStr = SecretStr("")
    #: the id (in TENURE_DISPATCHER_OFFER_KEYS) that signs new offer codes
    offer_key_id: int = Field(default=0, ge=0, le=7)

    @property
    def offer_key_map(self) -> dict[int, bytes]:
        keys: dict[int, bytes] = {}
        for part in self.offer_keys.get_secret_value().split(","):
            if part.strip():
                key_id, _, secret = part.strip().partition(":")
                if not key_id.isdigit() or not 0 <= int(key_id) <= 7 or len(secret) < 16:
                    raise ValueError("offer keys are <id 0-7>:<secret of 16+ characters>")
                keys[int(key_id)] = secret.encode()
        return keys


class DispatcherSettings(ServiceSettings):
    dispatcher: DispatcherGroup = DispatcherGroup()
    smtp: SmtpSettings = SmtpSettings()
    fcm: FcmSettings = FcmSettings()
    webpush: WebPushSettings = WebPushSettings()
    whatsapp: WhatsAppSettings = WhatsAppSettings()
    messenger: MessengerSettings = MessengerSettings()
    webhook: WebhookSettings = WebhookSettings()


@lru_cache
def get_settings() -> DispatcherSettings:
    return DispatcherSettings()
