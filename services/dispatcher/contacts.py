"""Who can be reached where: a customer's addresses, read from the profile projection.

The dispatcher keeps the profiles it consumes from ``profiles`` (its own projection);
the addresses come from the profile's fields and traits, under these names:

=============  ===============================================================
channel        where the address comes from
=============  ===============================================================
email          the profile's ``email`` (the ``email`` trait, as ingest folds it)
push           trait ``webPushSubscription`` (a browser's PushSubscription JSON:
               ``{"endpoint", "keys": {"p256dh", "auth"}}``) for Web Push, else
               trait ``fcmToken`` (a Firebase registration token)
whatsapp       trait ``whatsappId`` (the WhatsApp id, digits), else the profile's
               ``phone``
messenger      trait ``messengerPsid`` (the page-scoped id)
webhook        trait ``webhookUrl``, else the dispatcher's ``webhook_url`` setting
=============  ===============================================================

The customer's timezone (quiet hours, local send times) is the profile's ``timezone``
(``context.timezone`` of their events), else trait ``timezone``, else the policy's
default (:func:`services.dispatcher.policy.customer_zone`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.events.channels import Channel

WEB_PUSH_TRAIT = "webPushSubscription"
FCM_TOKEN_TRAIT = "fcmToken"
WHATSAPP_TRAIT = "whatsappId"
MESSENGER_TRAIT = "messengerPsid"
WEBHOOK_TRAIT = "webhookUrl"
#: an IANA zone name; the profile's own ``timezone`` (from events) comes first
TIMEZONE_TRAIT = "timezone"

_EMAIL = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")


@dataclass(frozen=True, slots=True)
class WebPushAddress:
    endpoint: str
    p256dh: str
    auth: str


@dataclass(frozen=True, slots=True)
class FcmAddress:
    token: str


Address = str | WebPushAddress | FcmAddress


@dataclass(frozen=True, slots=True)
class Contact:
    """What the dispatcher knows of a customer (the profile projection's row)."""

    customer_id: str
    erased: bool = False
    email: str | None = None
    phone: str | None = None
    timezone: str | None = None
    locale: str | None = None
    traits: Mapping[str, Any] = field(default_factory=dict)
    churn_risk: float | None = None
    predicted_ltv: float | None = None
    rfm_tier: str | None = None
    loyalty_tier: str | None = None
    loyalty_points: int | None = None
    #: the segmenter's recommendations, best first ({product_id, score, because, source})
    recommendations: tuple[Mapping[str, Any], ...] = ()

    def address(self, channel: Channel, *, webhook_default: str | None = None) -> Address | None:
        """Where a message on ``channel`` goes, or ``None`` when the customer has no
        address there (the next channel of the fallback list is tried)."""
        if self.erased:
            return None
        traits = self.traits
        if channel is Channel.EMAIL:
            email = self.email or _text(traits.get("email"))
            return email if email and _EMAIL.match(email) else None
        if channel is Channel.PUSH:
            subscription = traits.get(WEB_PUSH_TRAIT)
            if isinstance(subscription, Mapping):
                keys = subscription.get("keys")
                endpoint = _text(subscription.get("endpoint"))
                if endpoint and isinstance(keys, Mapping):
                    p256dh, auth = _text(keys.get("p256dh")), _text(keys.get("auth"))
                    if p256dh and auth:
                        return WebPushAddress(endpoint, p256dh, auth)
            token = _text(traits.get(FCM_TOKEN_TRAIT))
            return FcmAddress(token) if token else None
        if channel is Channel.WHATSAPP:
            number = _text(traits.get(WHATSAPP_TRAIT)) or self.phone
            digits = re.sub(r"[^\d]", "", number or "")
            return digits if 6 <= len(digits) <= 15 else None
        if channel is Channel.MESSENGER:
            return _text(traits.get(MESSENGER_TRAIT))
        if channel is Channel.WEBHOOK:
            return _text(traits.get(WEBHOOK_TRAIT)) or webhook_default
        return None

    def template_context(self) -> dict[str, Any]:
        """What a template sees as ``customer``."""
        return {
            "id": self.customer_id,
            "email": self.email,
            "phone": self.phone,
            "timezone": self.timezone,
            "locale": self.locale,
            "traits": dict(self.traits),
            "churn_risk": self.churn_risk,
            "predicted_ltv": self.predicted_ltv,
            "rfm_tier": self.rfm_tier,
            "loyalty_tier": self.loyalty_tier,
            "loyalty_points": self.loyalty_points,
            "recommendations": [dict(r) for r in self.recommendations],
        }


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
