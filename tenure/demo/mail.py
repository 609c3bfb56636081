"""Reading the emails the demo's customers received, from the dev SMTP sink's Maildir."""

from __future__ import annotations

import html
import mailbox
import re
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from email.utils import parseaddr
from pathlib import Path

DISPATCH_ID_HEADER = "X-Tenure-Dispatch-Id"
_HREF = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_COUPON = re.compile(r"\bNW15-\d{5}\b")


@dataclass
class Email:
    key: str
    to: str
    subject: str
    dispatch_id: str
    opens: list[str] = field(default_factory=list)
    clicks: list[str] = field(default_factory=list)
    surveys: dict[int, str] = field(default_factory=dict)
    coupon: str | None = None


def read_maildir(maildir: Path) -> list[Email]:
    """Every message in ``maildir`` (new and cur), oldest file name first."""
    if not (maildir / "new").is_dir() and not (maildir / "cur").is_dir():
        return []
    box = mailbox.Maildir(str(maildir), factory=None, create=False)
    found = []
    for key in sorted(box.keys()):
        try:
            raw = box.get_bytes(key)
        except (KeyError, FileNotFoundError):
            continue
        found.append(parse(key, raw))
    return found


def parse(key: str, raw: bytes) -> Email:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    body = message.get_body(preferencelist=("html",))
    markup = body.get_content() if body is not None else ""
    email = Email(
        key=key,
        to=parseaddr(str(message.get("To", "")))[1].lower(),
        subject=str(message.get("Subject", "")),
        dispatch_id=str(message.get(DISPATCH_ID_HEADER, key)),
    )
    for url in (html.unescape(u) for u in _HREF.findall(markup)):
        if "/t/o/" in url:
            email.opens.append(url)
        elif "/t/s/" in url:
            score = len(email.surveys)
            email.surveys[score] = url  # the NPS links come in order 0..10
        elif "/t/c/" in url:
            email.clicks.append(url)
    coupon = _COUPON.search(markup)
    email.coupon = coupon.group(0) if coupon else None
    return email
