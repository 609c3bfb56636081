"""Email over SMTP (aiosmtplib): STARTTLS or implicit TLS, auth, multipart text + HTML,
``List-Unsubscribe`` with ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``
(RFC 8058), a ``Message-ID`` made from the dispatch id.

Connections are pooled and reused (an SMTP session per message costs a TCP and TLS
handshake and EHLO / AUTH round trips): up to ``connections`` sessions, each
sending one message at a time; a session that failed is closed, not reused.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import re
import uuid
from email.header import Header
from typing import Literal

import aiosmtplib
from pydantic import BaseModel, Field, SecretStr

from services.dispatcher.channels.base import (
    Outgoing,
    PermanentProviderError,
    TransientProviderError,
)
from services.dispatcher.channels.plaintext import html_to_text

DISPATCH_ID_HEADER = "X-Tenure-Dispatch-Id"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class SmtpSettings(BaseModel):
    #: SMTP server host
    host: str = "127.0.0.1"
    #: SMTP server port
    port: int = Field(default=1025, ge=1, le=65535)
    #: ``starttls`` (port 587), ``tls`` (implicit, port 465) or ``none`` (a local sink)
    security: Literal["none", "starttls", "tls"] = "none"
    #: SMTP login (none: no AUTH)
    username: str | None = None
    #: SMTP password
    password: SecretStr | None = None
    #: check the server's TLS certificate (keep on outside development)
    validate_certs: bool = True
    #: the From header of every email
    from_address: str = "Tenure <noreply@tenure.local>"
    #: the domain of Message-IDs (``<dispatch-id@domain>``)
    message_id_domain: str = "tenure.local"
    #: also offered in List-Unsubscribe beside the one-click URL (``None``: not offered)
    unsubscribe_mailto: str | None = None
    #: SMTP connections kept open per process
    connections: int = Field(default=8, ge=1, le=256)
    #: the longest one SMTP command may take, in seconds
    timeout_s: float = Field(default=30.0, gt=0)


def build_email(message: Outgoing, settings: SmtpSettings) -> bytes:
    """The MIME message as sent: ``multipart/alternative`` with a text and an HTML part
    (the open pixel already in the HTML), each base64 in UTF-8, and the headers.

    Written directly rather than through :class:`email.message.EmailMessage`, whose
    header folding and flattening cost ~8 ms a message here, most of an email's CPU.
    Header values come from settings, a validated address and a subject without line
    breaks (:func:`~services.dispatcher.templates.render_variant`); non-ASCII ones are
    RFC 2047 encoded.
    """
    rendered = message.rendered
    html = None if rendered.html is None else well_formed(rendered.html)
    text = None if rendered.text is None else well_formed(rendered.text)
    if text is None and html is not None:
        text = html_to_text(html)
    dispatch_id = well_formed(message.dispatch_id)
    boundary = f"=_tenure_{uuid.uuid4().hex}"
    headers = [
        f"From: {_header(settings.from_address)}",
        f"To: {_no_breaks(well_formed(str(message.address)))}",
        f"Subject: {_header(well_formed(rendered.subject or ''))}",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        f"Message-ID: {message_id(dispatch_id, settings.message_id_domain)}",
        f"{DISPATCH_ID_HEADER}: {_no_breaks(dispatch_id)}",
        "MIME-Version: 1.0",
    ]
    if message.unsubscribe_url:
        targets = [f"<{_no_breaks(well_formed(message.unsubscribe_url))}>"]
        if settings.unsubscribe_mailto:
            targets.append(
                f"<mailto:{_no_breaks(settings.unsubscribe_mailto)}?subject=unsubscribe>"
            )
        headers.append(f"List-Unsubscribe: {', '.join(targets)}")
        headers.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    parts = [("plain", text or "")]
    if html is not None:
        parts.append(("html", html))
    headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    lines = [*headers, "", "This is a multi-part message in MIME format."]
    for subtype, body in parts:
        lines += [
            f"--{boundary}",
            f'Content-Type: text/{subtype}; charset="utf-8"',
            "Content-Transfer-Encoding: base64",
            "",
            base64.encodebytes(body.encode()).decode().rstrip("\n").replace("\n", "\r\n"),
        ]
    lines += [f"--{boundary}--", ""]
    return "\r\n".join(lines).encode()


def well_formed(value: str) -> str:
    """``value`` with every lone surrogate (``\\ud800``, which UTF-8 cannot encode: a
    trait or a template may hold one) replaced by U+FFFD, as a decoder shows bad input."""
    if value.isascii():
        return value
    return _LONE_SURROGATE.sub("\ufffd", value)


def _no_breaks(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


def _header(value: str) -> str:
    """A header value, RFC 2047 encoded (and folded) when it is not ASCII."""
    value = _no_breaks(value)
    if value.isascii():
        return value
    name, address = email.utils.parseaddr(value)
    if address and "@" in address and value.rstrip().endswith(">"):
        return email.utils.formataddr((name, address), charset="utf-8")
    return Header(value, "utf-8").encode()


def message_id(dispatch_id: str, domain: str) -> str:
    return f"<{dispatch_id}@{domain}>"


class SmtpProvider:
    """Sends email through one SMTP server over a pool of reused sessions."""

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings
        self._sender = email.utils.parseaddr(settings.from_address)[1]
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(settings.connections)
        self._closed = False

    async def send(self, message: Outgoing) -> str:
        data = build_email(message, self._settings)
        async with self._slots:
            client = await self._session()
            try:
                await client.sendmail(self._sender, [str(message.address)], data)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                await _discard(client)
                codes = [r.code for r in exc.recipients]
                # the code alone: an SMTP answer quotes the address (``550 <alice@…>``)
                reason = "; ".join(str(code) for code in codes)
                if all(400 <= code < 500 for code in codes):
                    raise TransientProviderError(f"smtp: {reason}") from exc
                raise PermanentProviderError(f"smtp: {reason}") from exc
            except aiosmtplib.SMTPResponseException as exc:
                await _discard(client)
                reason = f"smtp: {exc.code}"
                if 400 <= exc.code < 500:
                    raise TransientProviderError(reason) from exc
                raise PermanentProviderError(reason) from exc
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                await _discard(client)
                raise TransientProviderError(f"smtp: {type(exc).__name__}") from exc
            self._idle.append(client)
        return message_id(message.dispatch_id, self._settings.message_id_domain)

    async def _session(self) -> aiosmtplib.SMTP:
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client
        settings = self._settings
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            use_tls=settings.security == "tls",
            start_tls=settings.security == "starttls",
            validate_certs=settings.validate_certs,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            timeout=settings.timeout_s,
        )
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise PermanentProviderError(f"smtp: authentication refused: {exc}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientProviderError(f"smtp: cannot connect: {exc}") from exc
        return client

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for client in idle:
            with contextlib.suppress(Exception):
                await client.quit()


async def _discard(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        client.close()
