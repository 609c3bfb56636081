"""Signed offer codes: round trip, determinism per dispatch, tampering, typing slips."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.offers import InvalidCode, Offer, ValueKind, issue, normalise, verify

KEYS = {0: b"k" * 32, 3: b"another key, rotated in" * 2}


offers = st.builds(
    Offer,
    kind=st.sampled_from(ValueKind),
    value=st.integers(1, 100),
    expires_on=st.dates(date(2000, 1, 1), date(2149, 1, 1)),
)


@settings(max_examples=200)
@given(
    offers,
    st.sampled_from([0, 3]),
    st.text(min_size=1, max_size=40),
    st.sampled_from(["", "VIP", "SPRING26"]),
)
def test_a_code_verifies_to_its_offer(offer: Offer, key_id: int, seed: str, prefix: str) -> None:
    code = issue(offer=offer, keys=KEYS, key_id=key_id, seed=seed, prefix=prefix)
    assert code == issue(offer=offer, keys=KEYS, key_id=key_id, seed=seed, prefix=prefix)
    checked = verify(code, keys=KEYS, today=offer.expires_on)
    assert checked.offer == offer
    assert checked.key_id == key_id
    assert not checked.expired
    assert verify(code, keys=KEYS, today=date(2149, 1, 2)).expired
    # as a person types it: lower case, O for 0, I or L for 1, surrounding spaces
    typed = f"  {code.lower().replace('0', 'o').replace('1', 'l')} "
    assert verify(typed, keys=KEYS, today=offer.expires_on).offer == offer
    assert normalise(typed) == code


@settings(max_examples=200)
@given(offers, st.integers(0, 31), st.integers(1, 31))
def test_any_changed_character_is_refused(offer: Offer, position: int, shift: int) -> None:
    code = issue(offer=offer, keys=KEYS, key_id=0, seed="d-1")
    chars = [c for c in code if c != "-"]
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    chars[position] = alphabet[(alphabet.index(chars[position]) + shift) % 32]
    tampered = "".join(chars)
    with pytest.raises(InvalidCode):
        verify(tampered, keys=KEYS)


def test_other_dispatches_get_other_codes_and_keys_matter() -> None:
    offer = Offer(kind=ValueKind.AMOUNT, value=1_500, expires_on=date(2027, 1, 31))
    codes = {issue(offer=offer, keys=KEYS, key_id=0, seed=f"dispatch-{i}") for i in range(2_000)}
    assert len(codes) == 2_000
    code = issue(offer=offer, keys=KEYS, key_id=0, seed="x", prefix="VIP")
    with pytest.raises(InvalidCode):
        verify(code, keys={0: b"not the key"})
    with pytest.raises(InvalidCode):
        verify(code, keys={3: KEYS[3]})
    with pytest.raises(InvalidCode):
        verify(code.replace("VIP", "VIQ"), keys=KEYS)  # the prefix is signed too
    with pytest.raises(InvalidCode):
        verify("HELLO", keys=KEYS)


def test_offers_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError):
        Offer(kind=ValueKind.PERCENT, value=101, expires_on=date(2027, 1, 1))
    with pytest.raises(ValueError):
        Offer(kind=ValueKind.AMOUNT, value=0, expires_on=date(2027, 1, 1))
