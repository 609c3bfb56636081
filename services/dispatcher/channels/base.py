"""What every provider implements, and the errors it raises.

ProviderError
├── TransientProviderError   worth another try (a timeout, 4xx SMTP reply, HTTP 429/5xx)
└── PermanentProviderError   never worth another try (a refused address, HTTP 400/401/403/404)

A provider's ``send`` is at-least-once: it returns the provider's message id once
the provider accepted the message, or raises one of the above. Retries are the
caller's (:mod:`services.dispatcher.sending`), so a provider makes exactly one attempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from services.dispatcher.contacts import Address
from services.dispatcher.templates import Rendered
from shared.events.channels import Channel


class ProviderError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientProviderError(ProviderError):
    """The provider may accept the same message a moment later."""


class PermanentProviderError(ProviderError):
    """The provider will never accept this message."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message, rendered, addressed, with its tracking links."""

    dispatch_id: str
    customer_id: str
    channel: Channel
    address: Address
    rendered: Rendered
    template_id: str
    unsubscribe_url: str | None = None
    #: opened-callback URL for push; the pixel is already in an email's HTML
    opened_url: str | None = None
    #: the request's attribution and context, for webhook payloads
    attributes: Mapping[str, object] = field(default_factory=dict)


class Provider(Protocol):
    """Sends messages of one channel. ``send`` makes one attempt (see the module doc)."""

    async def send(self, message: Outgoing) -> str: ...

    async def close(self) -> None: ...
