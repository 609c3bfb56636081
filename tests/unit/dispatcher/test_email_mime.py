"""The MIME bytes written for an email parse back to what was rendered."""

from __future__ import annotations

import re
from email import message_from_bytes, policy

from hypothesis import given
from hypothesis import strategies as st

from services.dispatcher.channels.base import Outgoing
from services.dispatcher.channels.email import SmtpSettings, build_email
from services.dispatcher.templates import Rendered
from shared.events.channels import Channel

SETTINGS = SmtpSettings(from_address="Équipe Tenure <noreply@tenure.local>")


def _mail(subject: str, text: str | None, html: str | None) -> bytes:
    rendered = Rendered(Channel.EMAIL, "default", subject=subject, text=text, html=html)
    return build_email(
        Outgoing("d-1", "ada", Channel.EMAIL, "ada@example.com", rendered, "t", "https://t/u/x"),
        SETTINGS,
    )


#: lone surrogates (category Cs) included: a trait or a template may hold one
_CHARS = st.characters(exclude_characters="\r", exclude_categories=())
_BODY = st.text(_CHARS, max_size=2_000)
_LONE = re.compile("[\ud800-\udfff]")


def _shown(value: str) -> str:
    """What a reader sees: a lone surrogate as U+FFFD."""
    return _LONE.sub("\ufffd", value)


@given(st.text(_CHARS, max_size=120), _BODY, st.none() | _BODY)
def test_headers_and_parts_round_trip(subject: str, text: str, html: str | None) -> None:
    subject = " ".join(subject.split())  # as rendering leaves a subject: one line
    parsed = message_from_bytes(_mail(subject, text, html), policy=policy.default)
    text, html = _shown(text), None if html is None else _shown(html)
    assert parsed["Subject"] == _shown(subject)
    assert parsed["From"].addresses[0].display_name == "Équipe Tenure"
    assert parsed["Message-ID"] == "<d-1@tenure.local>"
    assert parsed["List-Unsubscribe"] == "<https://t/u/x>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    body = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert body == text
    if html is not None:
        assert parsed.get_body(("html",)).get_content() == html  # type: ignore[union-attr]


def test_a_lone_surrogate_becomes_a_replacement_character() -> None:
    """Issue 21: a lone surrogate in the subject, text or HTML raised UnicodeEncodeError."""
    raw = _mail("Hi \ud800", "text \udfff", "<p>html \ud800</p>")
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == "Hi \ufffd"
    assert parsed.get_body(("plain",)).get_content() == "text \ufffd"  # type: ignore[union-attr]
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert html == "<p>html \ufffd</p>"
    only_html = message_from_bytes(_mail("s", None, "<p>\ud800</p>"), policy=policy.default)
    assert only_html.get_body(("plain",)).get_content().strip() == "\ufffd"  # type: ignore[union-attr]


def test_no_header_can_be_injected() -> None:
    raw = _mail("Hi\r\nBcc: victim@example.com", "x", None)
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Bcc"] is None
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
