"""A seeded population of shop customers and what they do, as Segment calls with
deterministic ``messageId``s (the same seed and size give the same calls, so sending
them again adds nothing).

Each customer has one live storyline, so that the default frequency cap (one email a
day) leaves each journey its audience:

- ``signup``: signs up now (welcome series);
- ``cart``: fills a cart now and leaves (abandoned cart);
- ``first_buyer``: browsed for months, places a first order now (post-purchase A/B);
- ``tier_up``: a loyal buyer whose order now lifts them to Gold (loyalty tier-up);
- ``lapsed``: bought for a while, then went quiet 35–150 days ago (win-back);
- ``regular``: history only (cohorts, churn, scores, recommendations).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tenure.demo.catalog import CLUSTERS, PRODUCTS

STORYLINES = (
    ("signup", 0.12),
    ("cart", 0.15),
    ("first_buyer", 0.35),
    ("tier_up", 0.08),
    ("lapsed", 0.15),
    ("regular", 0.15),
)
FIRST_NAMES = [
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Edsger",
    "Barbara",
    "Ken",
    "Frances",
    "Donald",
    "Radia",
    "Tim",
    "Hedy",
    "Katherine",
    "John",
    "Sophie",
    "Dennis",
    "Annie",
    "Guido",
    "Lovelace",
    "Mary",
    "Niklaus",
    "Anita",
    "Claude",
    "Joan",
]
#: one zone per few hours of offset: customers live where it is daytime now, so that
#: quiet hours (21:00–09:00 local) defer none of the demo's emails
ZONES = [
    "Pacific/Honolulu",
    "America/Anchorage",
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "America/Sao_Paulo",
    "Atlantic/Azores",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Athens",
    "Europe/Moscow",
    "Asia/Dubai",
    "Asia/Karachi",
    "Asia/Kolkata",
    "Asia/Dhaka",
    "Asia/Bangkok",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Noumea",
    "Pacific/Auckland",
]


def daytime_zones(now: datetime) -> list[str]:
    """The zones where it is between 10:00 and 18:59 now (never empty)."""
    zones = [z for z in ZONES if 10 <= now.astimezone(ZoneInfo(z)).hour < 19]
    return zones or ["UTC"]


@dataclass
class Customer:
    id: str
    index: int
    storyline: str
    first_name: str
    email: str
    cluster: int
    signed_up: datetime
    #: the cart this customer leaves (storyline ``cart``)
    cart: list[str] = field(default_factory=list)


def _product(pid: str, quantity: int = 1) -> dict[str, Any]:
    name, category, price = PRODUCTS[pid]
    return {
        "product_id": pid,
        "name": name,
        "category": category,
        "price": price,
        "quantity": quantity,
    }


class Population:
    def __init__(self, size: int, seed: int, now: datetime) -> None:
        self.size, self.seed, self.now = size, seed, now
        self.prefix = f"demo{seed}"
        rng = random.Random(seed)
        lines = [name for name, _ in STORYLINES]
        weights = [w for _, w in STORYLINES]
        self.customers = []
        for i in range(size):
            line = rng.choices(lines, weights)[0]
            first = rng.choice(FIRST_NAMES)
            cid = f"{self.prefix}-c{i:05d}"
            days = rng.uniform(60, 365) if line != "signup" else 0.0
            customer = Customer(
                id=cid,
                index=i,
                storyline=line,
                first_name=first,
                email=f"{first.lower()}.{i}@demo{seed}.example",
                cluster=rng.randrange(len(CLUSTERS)),
                signed_up=now - timedelta(days=days),
            )
            if line == "cart":
                customer.cart = rng.sample(CLUSTERS[customer.cluster], 2)
            self.customers.append(customer)

    def by_email(self) -> dict[str, Customer]:
        return {c.email: c for c in self.customers}

    def by_id(self) -> dict[str, Customer]:
        return {c.id: c for c in self.customers}

    def _id(self, customer: Customer, what: str) -> str:
        return f"{customer.id}-{what}"

    def _rng(self, customer: Customer, what: str) -> random.Random:
        return random.Random(f"{self.seed}:{customer.id}:{what}")

    # --- history (backfilled by timestamp, through /v1/import) ----------------------------

    def history(self, customer: Customer, zones: list[str]) -> list[dict[str, Any]]:
        """The months before today: sign-up, browsing, orders; nothing for ``signup``.
        The sign-up's identify gives the customer's timezone (one of ``zones``)."""
        if customer.storyline == "signup":
            return []
        rng = self._rng(customer, "history")
        start = customer.signed_up
        calls: list[dict[str, Any]] = [
            self._identify(customer, start, "signup-identify", zone=self.zone(customer, zones)),
            self._track(customer, "Signed Up", start, "signed-up", {"method": "email"}),
        ]
        line = customer.storyline
        end = self.now - timedelta(days=rng.uniform(35, 150) if line == "lapsed" else 1)
        orders = {
            "first_buyer": 0,
            "cart": rng.randint(1, 3),
            "lapsed": rng.randint(1, 4),
            "regular": rng.randint(1, 8),
            "tier_up": 4,
        }[line]
        views = rng.randint(3, 12)
        span = max((end - start).total_seconds(), 3600.0)
        for k in range(views):
            at = start + timedelta(seconds=rng.uniform(0, span))
            pid = self._pick(rng, customer)
            calls.append(
                self._track(
                    customer,
                    "Product Viewed",
                    at,
                    f"view-{k}",
                    {"product_id": pid, "category": PRODUCTS[pid][1]},
                )
            )
        for k in range(orders):
            at = start + timedelta(seconds=span * (k + 1) / (orders + 1))
            items = [self._pick(rng, customer) for _ in range(rng.randint(1, 3))]
            if line == "tier_up":  # boots, four times: Silver, ~800 points, under Gold
                items = ["hiking-boot"]
            calls.append(self._order(customer, at, f"order-{k}", items, first=k == 0))
            if rng.random() < 0.3:
                calls.append(
                    self._track(customer, "Review Submitted", at + timedelta(days=6), f"review-{k}")
                )
        return calls

    # --- today -----------------------------------------------------------------------

    @staticmethod
    def zone(customer: Customer, zones: list[str]) -> str:
        return zones[customer.index % len(zones)]

    def today(self, customer: Customer, zones: list[str]) -> list[dict[str, Any]]:
        """What the customer does now (nothing, for the lapsed and the regulars); an
        identify first, with their (daytime) timezone."""
        line = customer.storyline
        if line in ("lapsed", "regular"):
            return []
        rng = self._rng(customer, "today")
        now = self.now
        zone = self.zone(customer, zones)
        calls = [self._identify(customer, now, f"today-identify-{zone}", zone=zone)]
        if line == "signup":
            calls.append(self._track(customer, "Signed Up", now, "signed-up", {"method": "email"}))
        for k in range(rng.randint(1, 3)):
            pid = self._pick(rng, customer)
            calls.append(
                self._track(
                    customer,
                    "Product Viewed",
                    now,
                    f"today-view-{k}",
                    {"product_id": pid, "category": PRODUCTS[pid][1]},
                )
            )
        if line == "cart":
            calls.append(
                self._track(
                    customer,
                    "Cart Updated",
                    now,
                    "today-cart",
                    {
                        "cart_id": f"{customer.id}-cart",
                        "products": [_product(p) for p in customer.cart],
                    },
                )
            )
        elif line == "first_buyer":
            items = [self._pick(rng, customer) for _ in range(rng.randint(1, 2))]
            calls.append(self._order(customer, now, "today-order", items, first=True))
        elif line == "tier_up":
            items = ["rain-shell", "hiking-boot"]
            calls.append(self._order(customer, now, "today-order", items, first=False))
        return calls

    # --- reactions to email -------------------------------------------------------------

    def reaction(self, customer: Customer, template: str, dispatch_id: str) -> dict[str, Any]:
        """Whether the customer opens, clicks, answers the NPS question and buys, for an
        email of ``template``: the 'b' subject and the coupon work better."""
        rng = random.Random(f"{self.seed}:{dispatch_id}")
        open_p, click_p, buy_p = {
            "demo-welcome-1": (0.6, 0.3, 0.10),
            "demo-welcome-2": (0.45, 0.2, 0.08),
            "demo-cart-reminder": (0.55, 0.35, 0.25),
            "demo-thanks-a": (0.5, 0.2, 0.08),
            "demo-thanks-b": (0.65, 0.35, 0.22),
            "demo-winback": (0.35, 0.2, 0.15),
            "demo-gold": (0.7, 0.3, 0.05),
        }.get(template, (0.4, 0.1, 0.05))
        opened = rng.random() < open_p
        clicked = opened and rng.random() < click_p / open_p
        nps = None
        if opened and template.startswith("demo-thanks") and rng.random() < 0.4:
            nps = min(10, max(0, round(rng.gauss(8 if template.endswith("b") else 7, 2))))
        bought = rng.random() < buy_p
        return {"opened": opened, "clicked": clicked, "nps": nps, "bought": bought}

    def conversion(
        self, customer: Customer, dispatch_id: str, template: str, coupon: str | None
    ) -> dict[str, Any]:
        rng = random.Random(f"{self.seed}:{dispatch_id}:order")
        items = customer.cart or [self._pick(rng, customer) for _ in range(rng.randint(1, 2))]
        order = self._order(
            customer, self.now_live(), f"order-after-{dispatch_id}", items, first=False
        )
        if customer.cart:
            order["properties"]["cart_id"] = f"{customer.id}-cart"
        if coupon:
            order["properties"]["coupon"] = coupon
        order["properties"]["campaign"] = template
        return order

    @staticmethod
    def now_live() -> datetime:
        return datetime.now(UTC)

    # --- calls ---------------------------------------------------------------------------

    def _pick(self, rng: random.Random, customer: Customer) -> str:
        if rng.random() < 0.8:
            return rng.choice(CLUSTERS[customer.cluster])
        return rng.choice(list(PRODUCTS))

    def _identify(
        self, customer: Customer, at: datetime, what: str, *, zone: str
    ) -> dict[str, Any]:
        return {
            "type": "identify",
            "messageId": self._id(customer, what),
            "userId": customer.id,
            "timestamp": at.isoformat(),
            "context": {"timezone": zone, "locale": "en-US"},
            "traits": {
                "email": customer.email,
                "first_name": customer.first_name,
                "timezone": zone,
                "signed_up_at": customer.signed_up.isoformat(),
                "plan": "member",
            },
        }

    def _track(
        self,
        customer: Customer,
        event: str,
        at: datetime,
        what: str,
        properties: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {
            "type": "track",
            "messageId": self._id(customer, what),
            "userId": customer.id,
            "event": event,
            "timestamp": at.isoformat(),
            "properties": properties or {},
        }

    def _order(
        self, customer: Customer, at: datetime, what: str, items: list[str], *, first: bool
    ) -> dict[str, Any]:
        products = [_product(p) for p in items]
        revenue = round(sum(p["price"] for p in products), 2)
        order_id = self._id(customer, what)
        return self._track(
            customer,
            "Order Completed",
            at,
            what,
            {
                "order_id": order_id,
                "revenue": revenue,
                "currency": "USD",
                "products": products,
                "first_order": first,
            },
        )
