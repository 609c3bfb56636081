"""What templates call to put an offer in a message, and which pools a template draws from.

``{{ coupon('spring-pool') }}`` — a unique code of that pool for this dispatch, drawn
before rendering (:func:`pools_in` reads the template's pool ids from its syntax tree);
``{{ offer_code('percent', 15, days=14, prefix='BACK') }}`` — a signed code worth 15 %
until 14 days from now, computed from the dispatch id (the same dispatch always gets
the same code). Both record what they issued, for the ``Coupon Issued`` events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment

from shared.offers import Offer, ValueKind, issue

_PARSER = SandboxedEnvironment()


def pools_in(sources: Iterable[str | None]) -> set[str]:
    """The pool ids of every ``coupon('<id>')`` call with a literal id in ``sources``
    (a call with a computed id cannot be drawn for beforehand: it renders an error)."""
    found: set[str] = set()
    for source in sources:
        if not source or "coupon" not in source:
            continue
        try:
            tree = _PARSER.parse(source)
        except Exception:  # the template's own compile check reports it
            continue
        for call in tree.find_all(nodes.Call):
            if (
                isinstance(call.node, nodes.Name)
                and call.node.name == "coupon"
                and call.args
                and isinstance(call.args[0], nodes.Const)
                and isinstance(call.args[0].value, str)
            ):
                found.add(call.args[0].value)
    return found


class OfferError(ValueError):
    """A template asked for an offer it cannot have (an empty pool, a bad value)."""


@dataclass
class Issued:
    code: str
    kind: str  # "pool" or "signed"
    pool: str | None = None
    expires_on: date | None = None


@dataclass
class OfferFunctions:
    """The ``coupon`` and ``offer_code`` of one dispatch's rendering."""

    dispatch_id: str
    today: date
    drawn: Mapping[str, str] = field(repr=False)  # pool id -> the code drawn for this dispatch
    #: the signing keys: never in a repr (a template printing ``coupon`` once showed them)
    keys: Mapping[int, bytes] = field(repr=False)
    key_id: int
    issued: dict[str, Issued] = field(default_factory=dict, repr=False)

    def coupon(self, pool: Any) -> str:
        code = self.drawn.get(str(pool))
        if code is None:
            raise OfferError(f"no code left in pool {pool!r} (or no such pool)")
        self.issued[code] = Issued(code=code, kind="pool", pool=str(pool))
        return code

    def offer_code(self, kind: Any, value: Any, days: Any = 30, prefix: Any = "") -> str:
        if not self.keys:
            raise OfferError("signed offers need TENURE_DISPATCHER_OFFER_KEYS")
        kinds = {"percent": ValueKind.PERCENT, "amount": ValueKind.AMOUNT}
        if str(kind) not in kinds:
            raise OfferError(f"offer_code: kind is 'percent' or 'amount', not {kind!r}")
        try:
            offer = Offer(
                kind=kinds[str(kind)],
                value=int(value),
                expires_on=self.today + timedelta(days=int(days)),
            )
            code = issue(
                offer=offer,
                keys=self.keys,
                key_id=self.key_id,
                seed=f"{self.dispatch_id}:{kind}:{value}:{days}",
                prefix=str(prefix),
            )
        except (ValueError, TypeError) as exc:
            raise OfferError(f"offer_code({kind!r}, {value!r}): {exc}") from exc
        self.issued[code] = Issued(code=code, kind="signed", expires_on=offer.expires_on)
        return code

    def context(self) -> dict[str, Any]:
        """The functions, as :class:`TemplateFunction` (a safe repr, no attributes)."""
        from services.dispatcher.templates import TemplateFunction

        return {
            "coupon": TemplateFunction("coupon", self.coupon),
            "offer_code": TemplateFunction("offer_code", self.offer_code),
        }
