"""The providers the settings configure, one per channel.

Email is always configured (SMTP; a local sink by default). Push goes to Web Push
or FCM by the customer's address (a browser subscription, or an FCM token), each
when its settings are given. WhatsApp, Messenger and webhooks when theirs are.
A channel without a provider is skipped in a request's fallback list.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from services.dispatcher.channels.base import Outgoing, PermanentProviderError, Provider
from services.dispatcher.channels.email import SmtpProvider
from services.dispatcher.channels.http import (
    FcmProvider,
    MessengerProvider,
    WebhookProvider,
    WebPushProvider,
    WhatsAppProvider,
)
from services.dispatcher.contacts import FcmAddress, WebPushAddress
from services.dispatcher.settings import DispatcherSettings
from shared.events.channels import Channel

log = logging.getLogger(__name__)


class PushRouter:
    """Push by Web Push or FCM, whichever address the customer has."""

    def __init__(self, *, webpush: Provider | None, fcm: Provider | None) -> None:
        self._webpush = webpush
        self._fcm = fcm

    async def send(self, message: Outgoing) -> str:
        if isinstance(message.address, WebPushAddress) and self._webpush is not None:
            return await self._webpush.send(message)
        if isinstance(message.address, FcmAddress) and self._fcm is not None:
            return await self._fcm.send(message)
        raise PermanentProviderError("push: no provider is configured for this address")

    async def close(self) -> None:
        return None


class Bounded:
    """At most ``limit`` calls of ``provider`` at once: more coroutines than the HTTP
    client has connections only queue inside its pool, which costs more per waiter."""

    def __init__(self, provider: Provider, limit: int) -> None:
        self._provider = provider
        self._slots = asyncio.Semaphore(limit)

    async def send(self, message: Outgoing) -> str:
        async with self._slots:
            return await self._provider.send(message)

    async def close(self) -> None:
        await self._provider.close()


def build_providers(
    settings: DispatcherSettings, client: httpx.AsyncClient
) -> dict[Channel, Provider]:
    providers: dict[Channel, Provider] = {Channel.EMAIL: SmtpProvider(settings.smtp)}
    webpush = (
        WebPushProvider(settings.webpush, client)
        if settings.webpush.vapid_private_key is not None
        else None
    )
    fcm = (
        FcmProvider(settings.fcm, client) if settings.fcm.service_account_json is not None else None
    )
    if webpush is not None or fcm is not None:
        providers[Channel.PUSH] = PushRouter(webpush=webpush, fcm=fcm)
    if settings.whatsapp.phone_number_id and settings.whatsapp.access_token:
        providers[Channel.WHATSAPP] = WhatsAppProvider(settings.whatsapp, client)
    if settings.messenger.page_access_token is not None:
        providers[Channel.MESSENGER] = MessengerProvider(settings.messenger, client)
    if settings.webhook.secret is not None:
        providers[Channel.WEBHOOK] = WebhookProvider(settings.webhook, client)
    limit = settings.dispatcher.http_connections
    for channel, provider in providers.items():
        if channel is not Channel.EMAIL:  # SMTP bounds itself by its sessions
            providers[channel] = Bounded(provider, limit)
    log.info("dispatcher channels: %s", ", ".join(sorted(c.value for c in providers)))
    return providers
