"""What an erasure (GDPR) leaves behind, the same in every service.

The erasure is the ``deleted`` message of the ``profiles`` topic (one per erased id,
merged ids included). A service that sees it removes what it holds about the
customer, or keeps a row it needs for counts under a :func:`pseudonym` that nothing
links back to the customer: a random one, drawn per service and per erasure, never
stored beside the id. Free-text reasons (a provider's answer may quote the address)
are cut down to their code (:func:`reason_code`). The erased id itself may stay only
in a tombstone: the profile projections' ``deleted`` rows, the metrics erasure log,
the segmenter's suppression list (see docs/architecture.md, "Erasure").
"""

from __future__ import annotations

import uuid

from shared.events.dispatch_outcomes import Reason

#: what every pseudonym starts with: a row of an erased customer is recognisable
PSEUDONYM_PREFIX = "erased-"

_REASONS = frozenset(r.value for r in Reason)


def pseudonym() -> str:
    """A fresh id for the rows of one erased customer (random: no way back to the id)."""
    return f"{PSEUDONYM_PREFIX}{uuid.uuid4().hex}"


def pseudonymise_sql(table: str, *, also: str = "", returning: str = "") -> str:
    """The statement that moves ``table``'s rows of the erased ids (``$1``, text[]) to
    their pseudonyms (``$2``, one per id, in order). ``also``: more assignments, after a
    comma, on the row ``t``; ``returning``: what the statement returns."""
    statement = (
        f"UPDATE {table} AS t SET customer_id = p.pseudonym{also} "
        "FROM unnest($1::text[], $2::text[]) AS p(customer_id, pseudonym) "
        "WHERE t.customer_id = p.customer_id"
    )
    return f"{statement} RETURNING {returning}" if returning else statement


def reason_code(reason: str | None) -> str | None:
    """A reason without its free text: its known code (``provider_error`` for
    ``provider_error: smtp: 550 <alice@example.com>…``), else ``other``."""
    if reason is None:
        return None
    head = reason.split(":", 1)[0].strip()
    return head if head in _REASONS else "other"
