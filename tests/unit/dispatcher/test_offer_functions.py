"""The offer functions templates call, and which pools a template draws from."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.dispatcher.offers.template import OfferError, OfferFunctions, pools_in
from services.dispatcher.templates import TemplateError, render_source
from shared.offers import ValueKind, verify

KEYS = {2: b"offer-key-for-unit-tests-0123"}


def functions(dispatch_id: str = "d-1", **drawn: str) -> OfferFunctions:
    return OfferFunctions(
        dispatch_id=dispatch_id, today=date(2026, 6, 1), drawn=drawn, keys=KEYS, key_id=2
    )


def test_pools_are_read_from_literal_calls_only() -> None:
    sources = [
        "Hi {{ coupon('spring') }} and {{ coupon(\"gold-welcome\") }}",
        "{% if x %}{{ coupon('spring') }}{% endif %}{{ coupon(context.pool) }}",
        "{{ offer_code('percent', 10) }}",
        "{{ broken",
        None,
    ]
    assert pools_in(sources) == {"spring", "gold-welcome"}


def test_a_template_gets_its_drawn_code_and_fails_without_one() -> None:
    offers = functions(spring="SPR-7")
    context = {"customer": {}, **offers.context()}
    assert render_source("Code: {{ coupon('spring') }}", context) == "Code: SPR-7"
    assert offers.issued["SPR-7"].pool == "spring"
    with pytest.raises(TemplateError, match="no code left in pool 'autumn'"):
        render_source("{{ coupon('autumn') }}", context)


def test_signed_codes_are_the_same_for_one_dispatch_and_verify() -> None:
    source = "{{ offer_code('amount', 1500, days=10, prefix='VIP') }}"
    first = render_source(source, functions("d-1").context())
    again = render_source(source, functions("d-1").context())
    other = render_source(source, functions("d-2").context())
    assert first == again != other
    checked = verify(first, keys=KEYS, today=date(2026, 6, 11))
    assert (checked.offer.kind, checked.offer.value) == (ValueKind.AMOUNT, 1500)
    assert checked.offer.expires_on == date(2026, 6, 11) and not checked.expired


@given(st.sampled_from(["bogus", "percent"]), st.integers(-5, 500))
def test_bad_offers_fail_the_template_with_a_reason(kind: str, value: int) -> None:
    offers = functions()
    if kind == "percent" and 1 <= value <= 100:
        assert offers.offer_code(kind, value)
        return
    with pytest.raises(OfferError):
        offers.offer_code(kind, value)


def test_signed_codes_need_keys() -> None:
    offers = OfferFunctions(dispatch_id="d", today=date(2026, 6, 1), drawn={}, keys={}, key_id=0)
    with pytest.raises(OfferError, match="OFFER_KEYS"):
        offers.offer_code("percent", 10)
