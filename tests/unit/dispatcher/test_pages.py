"""The tracking pages: Jinja2 templates that escape whatever they show."""

from __future__ import annotations

from fastapi import Response

from services.dispatcher.pages import NO_STORE, render
from services.dispatcher.tracking import Choice

HOSTILE = "<script>alert('x')</script> & \"quotes\""


def _text(answer: Response) -> str:
    return bytes(answer.body).decode()


def test_the_preference_page_escapes_names_and_marks_choices() -> None:
    answer = render(
        "preferences",
        title="Your preferences",
        action="/t/p/abc",
        unsubscribed=False,
        topics=[Choice("tips", HOSTILE, True), Choice("news", "News", False)],
        channels=[Choice("email", "Email", False)],
    )
    page = _text(answer)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;quotes&#34;" in page
    assert 'name="topic:tips" value="on" checked>' in page
    assert 'name="topic:news" value="on">' in page
    assert 'name="channel:email" value="on">' in page
    assert {k: answer.headers[k] for k in NO_STORE} == NO_STORE


def test_the_unsubscribed_page_names_the_topic_escaped_or_everything() -> None:
    one = _text(render("unsubscribed", title="Unsubscribed", topic=HOSTILE))
    assert "from “&lt;script&gt;" in one and "<script>" not in one
    every = _text(render("unsubscribed", title="Unsubscribed", topic=None))
    assert "You are unsubscribed from every message." in every


def test_the_survey_page_shows_the_score_and_posts_back() -> None:
    page = _text(render("survey", title="Thank you", score=9, kind="nps", action='/t/s/a"b'))
    assert "<strong>9</strong> (NPS)" in page
    assert 'action="/t/s/a&#34;b"' in page
