"""Sandboxed template rendering: personalisation, limits, injection contained."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.dispatcher.templates import (
    TemplateDefinition,
    TemplateError,
    Variant,
    render_source,
    render_variant,
    rewrite_links,
)
from shared.events.channels import Channel

CUSTOMER = {
    "id": "ada",
    "traits": {"first_name": "Ada", "plan": "pro"},
    "churn_risk": 0.82,
    "predicted_ltv": 310.5,
    "rfm_tier": "champions",
}


def test_renders_profile_and_request_context() -> None:
    variant = Variant(
        channel=Channel.EMAIL,
        subject="{{ customer.traits.first_name }}, your cart\nis waiting",
        text="{% for p in context.products %}{{ p.name }} {{ '%.2f'|format(p.price) }}\n"
        "{% endfor %}{% if customer.churn_risk > 0.5 %}-10%{% endif %} {{ customer.rfm_tier }}",
        html="<p>Hi {{ customer.traits.first_name }}</p>",
    )
    rendered = render_variant(
        variant,
        {"customer": CUSTOMER, "context": {"products": [{"name": "Shoes", "price": 89}]}},
    )
    assert rendered.subject == "Ada, your cart is waiting"  # no line break in a header
    assert rendered.text == "Shoes 89.00\n-10% champions"
    assert rendered.html == "<p>Hi Ada</p>"


def test_html_escapes_what_customers_wrote() -> None:
    out = render_source(
        "<p>{{ customer.traits.first_name }}</p>",
        {"customer": {"traits": {"first_name": "<script>alert(1)</script>"}}},
        html=True,
    )
    assert "<script>" not in out
    assert "&lt;script&gt;" in out


def test_missing_value_fails_with_its_name_unless_defaulted() -> None:
    with pytest.raises(TemplateError, match="last_name"):
        render_source("{{ customer.traits.last_name }}", {"customer": CUSTOMER})
    assert (
        render_source("{{ customer.traits.last_name | default('friend') }}", {"customer": CUSTOMER})
        == "friend"
    )


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ customer.__class__ }}{{ cycler.__init__.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{% for x in range(100000000) %}x{% endfor %}",
        "{{ 'x' * 100000000 }}",
        "{{ 9 ** 9999999 }}",
        "{% for a in range(10000) %}{% for b in range(10000) %}xxxxxxxxxx{% endfor %}{% endfor %}",
        "{{ lipsum() }}",
        "{% import 'os' as os %}",
        "{% include '/etc/passwd' %}",
        "{{ unclosed",
    ],
)
def test_injection_and_runaway_templates_fail_cleanly(source: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render_source(source, {"customer": CUSTOMER})
    assert str(caught.value)


def test_locale_falls_back_to_language_then_default() -> None:
    definition = TemplateDefinition(
        name="welcome",
        variants=[
            Variant(channel=Channel.EMAIL, subject="Hello", text="hi"),
            Variant(channel=Channel.EMAIL, locale="fr", subject="Bonjour", text="salut"),
            Variant(channel=Channel.PUSH, locale="de", title="Hallo", text="hallo"),
        ],
    )
    assert definition.variant(Channel.EMAIL, "fr-FR").subject == "Bonjour"  # type: ignore[union-attr]
    assert definition.variant(Channel.EMAIL, "en_GB").subject == "Hello"  # type: ignore[union-attr]
    assert definition.variant(Channel.PUSH, "fr").title == "Hallo"  # type: ignore[union-attr]
    assert definition.variant(Channel.WHATSAPP, "fr") is None


def test_a_variant_must_have_its_channels_content() -> None:
    with pytest.raises(ValidationError):
        Variant(channel=Channel.EMAIL, text="no subject")
    with pytest.raises(ValidationError):
        TemplateDefinition(
            name="t",
            variants=[
                Variant(channel=Channel.EMAIL, subject="a", text="b"),
                Variant(channel=Channel.EMAIL, subject="c", text="d"),
            ],
        )


def test_links_are_rewritten_only_for_http_hrefs() -> None:
    html = '<a href="https://shop.example/cart?a=1&amp;b=2">x</a><a href="mailto:x@y">m</a>'
    out = rewrite_links(html, lambda url: f"https://t/c?u={url}")
    assert 'href="https://t/c?u=https://shop.example/cart?a=1&amp;b=2"' in out
    assert 'href="mailto:x@y"' in out


@given(st.text(max_size=200))
def test_any_trait_text_renders_verbatim_in_text_and_never_as_markup(value: str) -> None:
    context = {"customer": {"traits": {"name": value}}}
    assert render_source("{{ customer.traits.name }}", context) == value
    html = render_source("<b>{{ customer.traits.name }}</b>", context, html=True)
    assert "<" not in html[3:-4] and ">" not in html[3:-4]


@given(st.text(max_size=300))
def test_any_source_either_renders_or_raises_template_error(source: str) -> None:
    with contextlib.suppress(TemplateError):
        render_source(source, {"customer": CUSTOMER, "context": {}})


def test_keys_named_like_dict_methods_read_the_values() -> None:
    context = {"context": {"items": ["a", "b"], "keys": 3}}
    assert render_source("{{ context.items | length }} {{ context.keys }}", context) == "2 3"
