"""Write keys as Segment and RudderStack SDKs send them: the HTTP Basic username
with an empty password (or ``writeKey`` in the JSON body, read by the app)."""

from __future__ import annotations

import base64
import binascii


def key_from_authorization(header: str | None) -> str | None:
    """The username of a ``Basic`` Authorization header, or None."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, _, _password = decoded.partition(":")
    return username or None
