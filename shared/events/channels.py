"""The channels a message can go out on, shared by ``dispatch.requests`` and
``dispatch.outcomes`` (and so by the journey, the dispatcher and metrics)."""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    EMAIL = "email"
    #: Web Push (VAPID) or Firebase Cloud Messaging, whichever contact the customer has
    PUSH = "push"
    WHATSAPP = "whatsapp"
    MESSENGER = "messenger"
    #: a generic HTTPS webhook signed with an HMAC header
    WEBHOOK = "webhook"
