"""The shop traffic ``tenure bench e2e`` posts through ingest's ``/v1/batch``.

Mostly browsing, as a shop's event stream is; per :data:`MIX_SIZE` events:

- one new customer signs up: an ``identify`` (email ``<customer id>@bench.example``,
  a timezone where it is daytime now, so quiet hours defer nothing) and ``Signed Up``:
  the demo's welcome journey emails them at once (the latency probe);
- one first order of an earlier sign-up (the post-purchase A/B journey; the frequency
  cap usually suppresses it after the welcome email);
- two repeat orders and three ``Cart Updated`` (the abandoned-cart journey waits a
  minute on each) of earlier sign-ups;
- the rest ``Product Viewed`` by earlier sign-ups.

So about 2 % of the events start an email on their own; the welcome emails are the
ones whose latency is measured (the customer id is in the address). Every call has a
unique ``messageId`` (the run's prefix and a counter).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import orjson

from tenure.demo.catalog import PRODUCTS
from tenure.demo.population import daytime_zones

#: the pattern's length: one sign-up (two calls), one first order, two repeat orders,
#: three carts, the rest product views
MIX_SIZE = 50
_FIRST_ORDER, _REPEATS, _CARTS = 1, 2, 3
EMAIL_DOMAIN = "bench.example"


def customer_of(address: str) -> str | None:
    """The customer id in a bench email address, or None for another address."""
    local, _, domain = address.strip().lower().partition("@")
    return local if domain == EMAIL_DOMAIN else None


class ShopTraffic:
    """Batches of calls; :meth:`batch` also says which customers signed up in it."""

    def __init__(self, prefix: str, seed: int = 11) -> None:
        self._prefix = prefix
        self._rng = random.Random(seed)
        self._products = list(PRODUCTS.items())
        self._zones = daytime_zones(datetime.now(UTC))
        self._seq = 0
        self._customers = 0
        self._position = 0  # within the mix pattern

    @property
    def customers(self) -> int:
        return self._customers

    def batch(self, size: int) -> tuple[bytes, list[str]]:
        """A ``{"batch": [...]}`` body of ``size`` calls and the customers who sign up in it."""
        now = datetime.now(UTC).isoformat()
        calls: list[dict[str, Any]] = []
        signed_up: list[str] = []
        while len(calls) < size:
            slot = self._position
            self._position = (self._position + 1) % (MIX_SIZE - 1)
            if slot == 0:
                customer = self._new_customer()
                signed_up.append(customer)
                calls.append(self._identify(customer, now))
                calls.append(self._track(customer, "Signed Up", now, {"method": "email"}))
            elif slot <= _FIRST_ORDER:
                calls.append(self._order(self._earlier(), now, first=True))
            elif slot <= _FIRST_ORDER + _REPEATS:
                calls.append(self._order(self._earlier(), now, first=False))
            elif slot <= _FIRST_ORDER + _REPEATS + _CARTS:
                calls.append(self._cart(self._earlier(), now))
            else:
                pid, (_, category, _) = self._rng.choice(self._products)
                properties = {"product_id": pid, "category": category}
                calls.append(self._track(self._earlier(), "Product Viewed", now, properties))
        return orjson.dumps({"batch": calls}), signed_up

    def _new_customer(self) -> str:
        self._customers += 1
        return f"{self._prefix}-c{self._customers}"

    def _earlier(self) -> str:
        return f"{self._prefix}-c{self._rng.randint(1, max(1, self._customers))}"

    def _message_id(self) -> str:
        self._seq += 1
        return f"{self._prefix}-m{self._seq}"

    def _identify(self, customer: str, now: str) -> dict[str, Any]:
        zone = self._zones[self._customers % len(self._zones)]
        return {
            "type": "identify",
            "messageId": self._message_id(),
            "userId": customer,
            "timestamp": now,
            "context": {"timezone": zone, "locale": "en-US"},
            "traits": {
                "email": f"{customer}@{EMAIL_DOMAIN}",
                "first_name": "Bench",
                "timezone": zone,
                "signed_up_at": now,
                "plan": "member",
            },
        }

    def _track(
        self, customer: str, event: str, now: str, properties: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "type": "track",
            "messageId": self._message_id(),
            "userId": customer,
            "event": event,
            "timestamp": now,
            "properties": properties,
        }

    def _products_of(self, count: int) -> list[dict[str, Any]]:
        picked = self._rng.sample(self._products, count)
        return [
            {"product_id": pid, "name": name, "category": category, "price": price, "quantity": 1}
            for pid, (name, category, price) in picked
        ]

    def _order(self, customer: str, now: str, *, first: bool) -> dict[str, Any]:
        products = self._products_of(self._rng.randint(1, 3))
        properties = {
            "order_id": f"{self._prefix}-o{self._seq}",
            "revenue": round(sum(p["price"] for p in products), 2),
            "currency": "USD",
            "products": products,
            "first_order": first,
        }
        return self._track(customer, "Order Completed", now, properties)

    def _cart(self, customer: str, now: str) -> dict[str, Any]:
        properties = {"cart_id": f"{customer}-cart", "products": self._products_of(2)}
        return self._track(customer, "Cart Updated", now, properties)
