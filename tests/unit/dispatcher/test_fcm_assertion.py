"""The FCM service-account assertion: an RS256 JWT that Google's token endpoint accepts."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.dispatcher.channels.http import service_account_jwt

AUDIENCE = "https://oauth2.googleapis.com/token"


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_the_assertion_verifies_with_the_accounts_public_key() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account = {"client_email": "sender@p.iam.gserviceaccount.com", "private_key": _pem(key)}
    account["private_key_id"] = "k1"
    token = service_account_jwt(account, audience=AUDIENCE, now=1_800_000_000)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT", "kid": "k1"}
    claims = jwt.decode(
        token,
        key.public_key(),
        algorithms=["RS256"],
        audience=AUDIENCE,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims == {
        "iss": "sender@p.iam.gserviceaccount.com",
        "scope": "https://www.googleapis.com/auth/firebase.messaging",
        "aud": AUDIENCE,
        "iat": 1_800_000_000,
        "exp": 1_800_003_600,
    }
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other.public_key(), algorithms=["RS256"], audience=AUDIENCE)


def test_a_key_that_is_not_rsa_is_refused_clearly() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    account = {"client_email": "x@p.iam.gserviceaccount.com", "private_key": _pem(key)}
    with pytest.raises(ValueError, match="not a usable RSA key"):
        service_account_jwt(account, audience=AUDIENCE)
