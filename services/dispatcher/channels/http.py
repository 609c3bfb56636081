"""The providers spoken to over HTTPS (one shared ``httpx.AsyncClient``):

- **FCM HTTP v1** — ``POST {base_url}/v1/projects/{project}/messages:send`` with an
  OAuth2 access token from a service account (a JWT signed RS256, exchanged at
  ``token_url``; cached until a minute before it expires);
- **Web Push** (RFC 8030) with **VAPID** (RFC 8292) — the payload encrypted
  ``aes128gcm`` (RFC 8291) for the browser's subscription, posted to its endpoint;
- **WhatsApp Cloud API** — ``POST {base_url}/{version}/{phone_number_id}/messages``:
  an approved template message (what may be sent outside the 24-hour window), or text;
- **Messenger Send API** — ``POST {base_url}/{version}/me/messages``;
- **webhook** — a JSON ``POST`` signed ``X-Tenure-Signature: t=<unix>,v1=<hex HMAC-SHA256
  of "<t>.<body>">``, to a URL checked by the SSRF guard (also on redirects).

Every base URL is a setting, so tests and development point them at loopback. Every
URL called — a configured base URL as much as a subscription endpoint or webhook URL
from a customer's traits — goes through the one SSRF guard
(:mod:`~services.dispatcher.channels.ssrf`), pinned to the address it checked; each
provider's ``allow`` setting (``TENURE_FCM_ALLOW``, ``TENURE_WEBPUSH_ALLOW``,
``TENURE_WHATSAPP_ALLOW``, ``TENURE_MESSENGER_ALLOW``, ``TENURE_WEBHOOK_ALLOW``) lets
named hosts or networks through (loopback in development).

HTTP 408/425/429/5xx and transport errors are transient; other 4xx are permanent. A
failure's reason is the provider, the status and nothing else (``webpush: HTTP 502``):
never the body of the answer, never an address — the reason is stored with the
delivery and readable through the API and the metrics.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from pydantic import BaseModel, Field, SecretStr

from services.dispatcher.channels.base import (
    Outgoing,
    PermanentProviderError,
    TransientProviderError,
)
from services.dispatcher.channels.ssrf import PinnedUrl, SsrfGuard, UnsafeTarget
from services.dispatcher.contacts import FcmAddress, WebPushAddress

SIGNATURE_HEADER = "X-Tenure-Signature"
_TRANSIENT_STATUS = {408, 425, 429}


_ALLOW_DOC = "hosts, addresses or CIDR networks the SSRF guard lets through (comma-separated)"


class FcmSettings(BaseModel):
    #: FCM API base URL
    base_url: str = "https://fcm.googleapis.com"
    allow: str = Field(default="", description=_ALLOW_DOC)
    #: the service account's JSON key (``client_email``, ``private_key``, ``project_id``)
    service_account_json: SecretStr | None = None
    #: where the signed JWT is exchanged for an access token (default: the key's token_uri)
    token_url: str | None = None
    #: Firebase project id (default: the service account's)
    project_id: str | None = None


class WebPushSettings(BaseModel):
    #: the VAPID private key (PEM or raw base64url), and the ``sub`` claim (mailto: or https:)
    vapid_private_key: SecretStr | None = None
    #: the VAPID `sub` claim: a mailto: or https: contact for push services
    vapid_subject: str = "mailto:ops@tenure.local"
    #: how long a push service keeps an undelivered Web Push, in seconds
    ttl_s: int = Field(default=86_400, ge=0)
    #: endpoints come from customers' traits: nothing but public addresses by default
    allow: str = Field(default="", description=_ALLOW_DOC)


class WhatsAppSettings(BaseModel):
    #: WhatsApp Cloud API base URL
    base_url: str = "https://graph.facebook.com"
    allow: str = Field(default="", description=_ALLOW_DOC)
    #: Graph API version
    api_version: str = "v21.0"
    #: the WhatsApp Business phone number id messages are sent from
    phone_number_id: str | None = None
    #: WhatsApp Cloud API access token
    access_token: SecretStr | None = None


class MessengerSettings(BaseModel):
    #: Messenger (Graph API) base URL
    base_url: str = "https://graph.facebook.com"
    allow: str = Field(default="", description=_ALLOW_DOC)
    #: Graph API version
    api_version: str = "v21.0"
    #: the Facebook page's access token for Messenger
    page_access_token: SecretStr | None = None
    #: the tag of a message outside the 24-hour window
    message_tag: str = "ACCOUNT_UPDATE"


class WebhookSettings(BaseModel):
    #: where webhook messages go when the customer has no ``webhookUrl`` trait
    url: str | None = None
    #: the HMAC key of ``X-Tenure-Signature`` (required to send webhooks)
    secret: SecretStr | None = None
    #: hosts, addresses or CIDR networks allowed although not public (comma-separated)
    allow: str = ""
    #: redirects a webhook call follows (each target checked again)
    max_redirects: int = Field(default=3, ge=0, le=10)


def _raise_for(response: httpx.Response, provider: str) -> None:
    """A provider's error answer as its status alone: the body (which may quote the
    request, an address or the provider's internals) is never kept."""
    if response.is_success:
        return
    reason = f"{provider}: HTTP {response.status_code}"
    if response.status_code in _TRANSIENT_STATUS or response.status_code >= 500:
        raise TransientProviderError(reason)
    raise PermanentProviderError(reason)


def guard_for(allow: str) -> SsrfGuard:
    return SsrfGuard(allow.split(","))


async def _pin(guard: SsrfGuard, provider: str, url: str) -> PinnedUrl:
    try:
        return await guard.check(url)
    except UnsafeTarget as exc:
        raise PermanentProviderError(f"{provider}: refused the URL: {exc}") from exc


async def _post(
    client: httpx.AsyncClient,
    provider: str,
    url: str,
    *,
    guard: SsrfGuard,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """One POST to ``url``, checked by ``guard`` and sent to the checked address; no
    redirect followed."""
    pinned = await _pin(guard, provider, url)
    try:
        response = await client.post(
            pinned.url,
            headers={**(headers or {}), "Host": pinned.host_header},
            extensions={"sni_hostname": pinned.hostname},
            follow_redirects=False,
            **kwargs,
        )
    except httpx.TransportError as exc:
        raise TransientProviderError(f"{provider}: {type(exc).__name__}") from exc
    _raise_for(response, provider)
    return response


# --- FCM ---------------------------------------------------------------------------


class FcmProvider:
    def __init__(self, settings: FcmSettings, client: httpx.AsyncClient) -> None:
        if settings.service_account_json is None:
            raise ValueError("FCM needs TENURE_FCM_SERVICE_ACCOUNT_JSON")
        account = json.loads(settings.service_account_json.get_secret_value())
        self._account = account
        self._project = settings.project_id or account["project_id"]
        self._token_url = settings.token_url or account.get(
            "token_uri", "https://oauth2.googleapis.com/token"
        )
        self._base = settings.base_url.rstrip("/")
        self._client = client
        self._guard = guard_for(settings.allow)
        self._token: tuple[str, float] | None = None
        self._token_lock = asyncio.Lock()

    async def access_token(self) -> str:
        """The cached OAuth2 token, renewed a minute before it expires."""
        async with self._token_lock:
            if self._token is not None and self._token[1] > time.time() + 60:
                return self._token[0]
            assertion = service_account_jwt(self._account, audience=self._token_url)
            response = await _post(
                self._client,
                "fcm oauth",
                self._token_url,
                guard=self._guard,
                data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                    "assertion": assertion,
                },
            )
            body = response.json()
            self._token = (body["access_token"], time.time() + float(body.get("expires_in", 3600)))
            return self._token[0]

    async def send(self, message: Outgoing) -> str:
        address = message.address
        if not isinstance(address, FcmAddress):
            raise PermanentProviderError("fcm: the customer has no FCM token")
        rendered = message.rendered
        data = {"dispatchId": message.dispatch_id, **(rendered.data or {})}
        if rendered.url:
            data["url"] = rendered.url
        if message.opened_url:
            data["openedUrl"] = message.opened_url
        payload = {
            "message": {
                "token": address.token,
                "notification": {"title": rendered.title or "", "body": rendered.text or ""},
                "data": data,
            }
        }
        token = await self.access_token()
        response = await _post(
            self._client,
            "fcm",
            f"{self._base}/v1/projects/{self._project}/messages:send",
            guard=self._guard,
            content=orjson.dumps(payload),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        return str(response.json().get("name", ""))

    async def close(self) -> None:
        return None


def service_account_jwt(account: dict[str, Any], *, audience: str, now: float | None = None) -> str:
    """A Google service-account assertion (RS256, signed by PyJWT) for the FCM scope."""
    import jwt

    issued = int(now if now is not None else time.time())
    claims = {
        "iss": account["client_email"],
        "scope": "https://www.googleapis.com/auth/firebase.messaging",
        "aud": audience,
        "iat": issued,
        "exp": issued + 3600,
    }
    headers = {"kid": account["private_key_id"]} if "private_key_id" in account else None
    try:
        return jwt.encode(claims, account["private_key"], algorithm="RS256", headers=headers)
    except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
        raise ValueError(f"the service account key is not a usable RSA key: {exc}") from None


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- Web Push ----------------------------------------------------------------------


class WebPushProvider:
    def __init__(self, settings: WebPushSettings, client: httpx.AsyncClient) -> None:
        from py_vapid import Vapid02

        if settings.vapid_private_key is None:
            raise ValueError("Web Push needs TENURE_WEBPUSH_VAPID_PRIVATE_KEY")
        key = settings.vapid_private_key.get_secret_value().strip()
        if "BEGIN" in key:
            from cryptography.hazmat.primitives import serialization

            pem = serialization.load_pem_private_key(key.encode(), password=None)
            self._vapid = Vapid02(private_key=pem)
        else:
            self._vapid = Vapid02.from_string(key)
        self._settings = settings
        self._client = client
        # the endpoint is a customer trait, settable with the public write key (issue 21)
        self._guard = guard_for(settings.allow)

    async def send(self, message: Outgoing) -> str:
        address = message.address
        if not isinstance(address, WebPushAddress):
            raise PermanentProviderError("webpush: the customer has no push subscription")
        rendered = message.rendered
        payload = orjson.dumps(
            {
                "title": rendered.title,
                "body": rendered.text,
                "url": rendered.url,
                "dispatchId": message.dispatch_id,
                "openedUrl": message.opened_url,
                "data": rendered.data or {},
            }
        )
        try:
            body = encrypt_web_push(payload, address)
        except (ValueError, TypeError) as exc:
            raise PermanentProviderError("webpush: bad subscription keys") from exc
        # checked before anything is signed for it: no VAPID header for an internal host
        await _pin(self._guard, "webpush", address.endpoint)
        endpoint = urlsplit(address.endpoint)
        claims = {
            "sub": self._settings.vapid_subject,
            "aud": f"{endpoint.scheme}://{endpoint.netloc}",
            "exp": int(time.time()) + 12 * 3600,
        }
        headers = dict(self._vapid.sign(claims))
        headers.update(
            {
                "TTL": str(self._settings.ttl_s),
                "Content-Encoding": "aes128gcm",
                "Content-Type": "application/octet-stream",
                "Urgency": "normal",
            }
        )
        response = await _post(
            self._client,
            "webpush",
            address.endpoint,
            guard=self._guard,
            content=body,
            headers=headers,
        )
        if response.status_code in (404, 410):  # pragma: no cover - _post raised already
            raise PermanentProviderError("webpush: the subscription is gone")
        return response.headers.get("Location", "") or message.dispatch_id

    async def close(self) -> None:
        return None


def encrypt_web_push(payload: bytes, address: WebPushAddress) -> bytes:
    """The RFC 8291 ``aes128gcm`` body for one subscription."""
    import http_ece
    from cryptography.hazmat.primitives.asymmetric import ec

    server_key = ec.generate_private_key(ec.SECP256R1())
    receiver = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64(address.p256dh))
    return bytes(
        http_ece.encrypt(
            payload,
            salt=os.urandom(16),
            private_key=server_key,
            dh=receiver,
            auth_secret=_unb64(address.auth),
            version="aes128gcm",
        )
    )


# --- WhatsApp and Messenger ---------------------------------------------------------


class WhatsAppProvider:
    def __init__(self, settings: WhatsAppSettings, client: httpx.AsyncClient) -> None:
        if settings.phone_number_id is None or settings.access_token is None:
            raise ValueError("WhatsApp needs TENURE_WHATSAPP_PHONE_NUMBER_ID and _ACCESS_TOKEN")
        self._url = (
            f"{settings.base_url.rstrip('/')}/{settings.api_version}/"
            f"{settings.phone_number_id}/messages"
        )
        self._token = settings.access_token
        self._client = client
        self._guard = guard_for(settings.allow)

    async def send(self, message: Outgoing) -> str:
        rendered = message.rendered
        payload: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": str(message.address),
        }
        if rendered.whatsapp_template:
            template: dict[str, Any] = {
                "name": rendered.whatsapp_template,
                "language": {"code": rendered.whatsapp_language or "en_US"},
            }
            if rendered.whatsapp_parameters:
                template["components"] = [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": p} for p in rendered.whatsapp_parameters
                        ],
                    }
                ]
            payload |= {"type": "template", "template": template}
        else:
            payload |= {"type": "text", "text": {"preview_url": False, "body": rendered.text}}
        response = await _post(
            self._client,
            "whatsapp",
            self._url,
            guard=self._guard,
            content=orjson.dumps(payload),
            headers={
                "Authorization": f"Bearer {self._token.get_secret_value()}",
                "Content-Type": "application/json",
            },
        )
        messages = response.json().get("messages") or [{}]
        return str(messages[0].get("id", ""))

    async def close(self) -> None:
        return None


class MessengerProvider:
    def __init__(self, settings: MessengerSettings, client: httpx.AsyncClient) -> None:
        if settings.page_access_token is None:
            raise ValueError("Messenger needs TENURE_MESSENGER_PAGE_ACCESS_TOKEN")
        self._url = f"{settings.base_url.rstrip('/')}/{settings.api_version}/me/messages"
        self._settings = settings
        self._token = settings.page_access_token
        self._client = client
        self._guard = guard_for(settings.allow)

    async def send(self, message: Outgoing) -> str:
        payload = {
            "recipient": {"id": str(message.address)},
            "messaging_type": "MESSAGE_TAG",
            "tag": self._settings.message_tag,
            "message": {"text": message.rendered.text},
        }
        response = await _post(
            self._client,
            "messenger",
            self._url,
            guard=self._guard,
            params={"access_token": self._token.get_secret_value()},
            content=orjson.dumps(payload),
            headers={"Content-Type": "application/json"},
        )
        return str(response.json().get("message_id", ""))

    async def close(self) -> None:
        return None


# --- webhook -------------------------------------------------------------------------


def sign_webhook(secret: bytes, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookProvider:
    def __init__(self, settings: WebhookSettings, client: httpx.AsyncClient) -> None:
        if settings.secret is None:
            raise ValueError("webhooks need TENURE_WEBHOOK_SECRET")
        self._secret = settings.secret.get_secret_value().encode()
        self._guard = guard_for(settings.allow)
        self._max_redirects = settings.max_redirects
        self._client = client

    async def send(self, message: Outgoing) -> str:
        rendered = message.rendered
        body = orjson.dumps(
            {
                "dispatchId": message.dispatch_id,
                "customerId": message.customer_id,
                "templateId": message.template_id,
                "text": rendered.text,
                "title": rendered.title,
                "url": rendered.url,
                "data": rendered.data or {},
                **{k: v for k, v in message.attributes.items() if v is not None},
            }
        )
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_webhook(self._secret, body, int(time.time())),
            "Idempotency-Key": message.dispatch_id,
        }
        url = str(message.address)
        for _ in range(self._max_redirects + 1):
            try:
                pinned = await self._guard.check(url)
            except UnsafeTarget as exc:
                raise PermanentProviderError(f"webhook: refused the URL: {exc}") from exc
            try:
                response = await self._client.post(
                    pinned.url,
                    content=body,
                    headers={**headers, "Host": pinned.host_header},
                    extensions={"sni_hostname": pinned.hostname},
                    follow_redirects=False,
                )
            except httpx.TransportError as exc:
                raise TransientProviderError(f"webhook: {type(exc).__name__}") from exc
            if response.status_code in (301, 302, 303, 307, 308) and "location" in response.headers:
                url = str(httpx.URL(url).join(response.headers["location"]))
                continue
            _raise_for(response, "webhook")
            return response.headers.get("X-Message-Id", "") or message.dispatch_id
        raise PermanentProviderError("webhook: too many redirects")

    async def close(self) -> None:
        return None
