"""Ids made from what a person named a thing."""

from __future__ import annotations

import re
import uuid


def id_from_name(name: str, kind: str) -> str:
    """A readable, unique id for a new resource: its name as a lower-case slug (at most
    48 characters; ``kind`` when nothing is left) and six random hex digits.

    ``id_from_name("Win back: VIPs", "segment")`` → ``"win-back-vips-3f9a1c"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48]
    return f"{slug or kind}-{uuid.uuid4().hex[:6]}"
