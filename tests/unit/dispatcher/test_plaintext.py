"""The plain-text part of an email, made from its HTML."""

from __future__ import annotations

import html
from email import message_from_bytes, policy

from hypothesis import given
from hypothesis import strategies as st

from services.dispatcher.channels.base import Outgoing
from services.dispatcher.channels.email import SmtpSettings, build_email
from services.dispatcher.channels.plaintext import html_to_text
from services.dispatcher.templates import Rendered
from shared.events.channels import Channel

README_EMAIL = '<p>Order o-2 is on its way.</p><a href="https://example.com">Track it</a>'


def test_the_readme_email_reads_as_two_lines_with_the_link() -> None:
    text = html_to_text(README_EMAIL)
    assert "way.Track" not in text
    assert text == "Order o-2 is on its way.\n\nTrack it <https://example.com>"


def test_entities_are_unescaped_and_words_kept_apart() -> None:
    assert html_to_text("Tom &amp; Jerry&nbsp;say<br>bye") == "Tom & Jerry say\nbye"
    assert html_to_text("1 &lt; 2 &#8212; &eacute;t&eacute;") == "1 < 2 — été"


def test_blocks_break_lines_and_hidden_parts_are_dropped() -> None:
    html = (
        "<html><head><title>T</title><style>p{color:red}</style></head><body>"
        "<h1>Hi</h1><ul><li>one</li><li>two</li></ul><div>a</div><div>b</div>"
        "<script>alert(1)</script></body></html>"
    )
    assert html_to_text(html) == "Hi\n\n- one\n- two\n\na\nb"


def test_a_link_whose_text_is_its_url_is_not_repeated() -> None:
    assert html_to_text('<a href="https://x.test/a">https://x.test/a</a>') == "https://x.test/a"


def test_the_email_text_part_is_made_from_the_html_when_the_template_has_none() -> None:
    rendered = Rendered(Channel.EMAIL, "default", subject="s", text=None, html=README_EMAIL)
    raw = build_email(
        Outgoing("d-1", "ada", Channel.EMAIL, "ada@example.com", rendered, "t", "https://t/u/x"),
        SmtpSettings(),
    )
    parsed = message_from_bytes(raw, policy=policy.default)
    body = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert body.strip() == "Order o-2 is on its way.\n\nTrack it <https://example.com>"


@given(st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc")), max_size=300))
def test_escaped_text_comes_back_as_it_was_written(words: str) -> None:
    """Any text, escaped into a paragraph, reads back unescaped (spaces collapsed)."""
    assert html_to_text(f"<p>{html.escape(words)}</p>") == " ".join(
        words.replace("\xa0", " ").split()
    )
