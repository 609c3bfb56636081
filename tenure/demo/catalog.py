"""What ``tenure demo`` sets up: segments, a loyalty program, a coupon pool, templates
and five journeys, as an online shop (Northwind Outfitters) would.

Waits are compressed (minutes, not days) so that a demo shows every step in a few
minutes; everything else is as docs/journeys.md, docs/templates.md and
docs/personalisation.md describe it.
"""

from __future__ import annotations

from typing import Any

SHOP = "Northwind Outfitters"
WINBACK_POOL = "demo-winback-15"

#: product id -> (name, category, price)
PRODUCTS: dict[str, tuple[str, str, float]] = {
    "trail-runner": ("Trail Runner shoes", "shoes", 119.0),
    "city-sneaker": ("City Sneaker", "shoes", 89.0),
    "hiking-boot": ("Ridge hiking boots", "shoes", 159.0),
    "wool-socks": ("Merino socks (3 pairs)", "socks", 24.0),
    "running-socks": ("Running socks", "socks", 14.0),
    "rain-shell": ("Rain shell jacket", "outerwear", 179.0),
    "down-vest": ("Down vest", "outerwear", 129.0),
    "fleece": ("Midweight fleece", "outerwear", 79.0),
    "base-layer": ("Merino base layer", "apparel", 69.0),
    "trail-shorts": ("Trail shorts", "apparel", 49.0),
    "sun-cap": ("Sun cap", "accessories", 25.0),
    "daypack": ("20 L daypack", "bags", 89.0),
    "water-bottle": ("Insulated bottle", "accessories", 29.0),
    "headlamp": ("Headlamp", "accessories", 39.0),
    "trek-poles": ("Trekking poles", "accessories", 99.0),
    "yoga-mat": ("Travel yoga mat", "fitness", 59.0),
}
#: taste clusters: customers mostly buy within one (what recommendations pick up)
CLUSTERS: list[list[str]] = [
    ["trail-runner", "running-socks", "trail-shorts", "sun-cap", "water-bottle"],
    ["hiking-boot", "wool-socks", "rain-shell", "daypack", "trek-poles", "headlamp"],
    ["city-sneaker", "fleece", "down-vest", "base-layer", "yoga-mat"],
]
CONSUMABLE = {"wool-socks", "running-socks"}

SEGMENTS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "demo-repeat-buyers",
        "Repeat buyers (3+ orders in 90 days)",
        {
            "kind": "event_count",
            "event": "Order Completed",
            "op": "gte",
            "count": 3,
            "within_days": 90,
        },
    ),
    (
        "demo-high-value",
        "High value (spent 500+ in a year)",
        {
            "kind": "event_value",
            "event": "Order Completed",
            "aggregate": "sum",
            "op": "gte",
            "value": 500,
            "within_days": 365,
        },
    ),
    ("demo-gold", "Gold loyalty tier", {"kind": "loyalty_tier", "in": ["Gold"]}),
]
#: the lapsed segment exists before the win-back journey is published (publishing checks
#: that the segments a journey names exist) with a rule nobody matches; its real rule
#: (below) is saved once the journeys are live: that version's backfill starts the win-backs
NOBODY_YET = {
    "kind": "event_count",
    "event": "Demo Placeholder (never sent)",
    "op": "gte",
    "count": 1,
    "within_days": 1,
}
LAPSED_SEGMENT = (
    "demo-lapsed",
    "Lapsed: nothing for 30 days",
    {"kind": "last_event", "event": None, "older_than_days": 30},
)

LOYALTY_PROGRAM: dict[str, Any] = {
    "rules": [
        {"kind": "per_revenue", "id": "spend", "event": "Order Completed", "points_per_unit": 1},
        {"kind": "first_event", "id": "welcome", "event": "Order Completed", "points": 50},
    ],
    "tiers": [
        {"name": "Member", "min_points": 0},
        {"name": "Silver", "min_points": 400, "multiplier": 1.25},
        {"name": "Gold", "min_points": 1000, "multiplier": 1.5},
    ],
    "expire_after_days": 365,
    "qualifying_days": 365,
}

_NAME = "{{ customer.traits.first_name | default('there') }}"
_PICKS = (
    "{% if customer.recommendations %}<h3>Picked for you</h3><ul>"
    "{% for r in customer.recommendations[:3] %}"
    '<li><a href="https://shop.example/p/{{ r.product_id }}">{{ r.product_id }}</a>'
    "{% if r.because %} <small>because you liked {{ r.because[0] }}</small>{% endif %}</li>"
    "{% endfor %}</ul>{% endif %}"
)
_FOOTER = (
    '<p style="color:#888"><a href="{{ preferences_url }}">Email preferences</a> · '
    f'<a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a> · {SHOP}</p>'
)
_NPS = (
    "<p>How likely are you to recommend us to a friend?<br>"
    "{% for s in range(11) %}<a href=\"{{ survey_url('nps', s) }}\">{{ s }}</a> {% endfor %}</p>"
)


def _email(subject: str, body: str) -> dict[str, Any]:
    return {"channel": "email", "subject": subject, "html": body + _FOOTER}


#: template id -> (definition, the journey it belongs to, the subject's marker)
TEMPLATES: dict[str, dict[str, Any]] = {
    "demo-welcome-1": {
        "name": "Welcome 1: hello",
        "variants": [
            _email(
                f"Welcome to {SHOP}, {_NAME}",
                f"<p>Hi {_NAME}, welcome aboard.</p>"
                '<p><a href="https://shop.example/new">See what is new</a></p>' + _PICKS,
            )
        ],
    },
    "demo-welcome-2": {
        "name": "Welcome 2: bestsellers",
        "variants": [
            _email(
                f"{_NAME}, our bestsellers this week",
                "<p>What other explorers loved this week:</p>" + _PICKS,
            )
        ],
    },
    "demo-cart-reminder": {
        "name": "Abandoned cart reminder",
        "variants": [
            _email(
                f"{_NAME}, you left something in your cart",
                "<ul>{% for p in context.products %}<li>{{ p.name }} — "
                "{{ '%.2f' | format(p.price) }}</li>{% endfor %}</ul>"
                '<p><a href="https://shop.example/cart/{{ context.cart_id }}">Back to your cart</a>'
                "</p>",
            )
        ],
    },
    "demo-thanks-a": {
        "name": "Post-purchase A: thank you",
        "variants": [
            _email(
                f"Thanks for your order, {_NAME}",
                "<p>Order {{ context.order_id }} is on its way.</p>"
                '<p><a href="https://shop.example/orders/{{ context.order_id }}">Track it</a></p>'
                + _NPS,
            )
        ],
    },
    "demo-thanks-b": {
        "name": "Post-purchase B: thank you with picks",
        "variants": [
            _email(
                f"{_NAME}, your order is on its way (and picks for your next trip)",
                "<p>Order {{ context.order_id }} is on its way.</p>"
                '<p><a href="https://shop.example/orders/{{ context.order_id }}">Track it</a></p>'
                + _PICKS
                + _NPS,
            )
        ],
    },
    "demo-winback": {
        "name": "Win-back with a unique coupon",
        "variants": [
            _email(
                f"We miss you, {_NAME}: 15% off, just for you",
                f"<p>Your code: <b>{{{{ coupon('{WINBACK_POOL}') }}}}</b> (15% off, one use).</p>"
                + _PICKS
                + '<p><a href="https://shop.example/">Come back to the shop</a></p>',
            )
        ],
    },
    "demo-gold": {
        "name": "Welcome to Gold",
        "variants": [
            _email(
                f"Welcome to Gold, {_NAME}",
                "<p>You have {{ customer.loyalty_points | default(0) }} points and earn 1.5× "
                "from now on.</p>"
                '<p><a href="https://shop.example/loyalty">Your rewards</a></p>',
            )
        ],
    },
}
#: a subject's words -> (journey, template): how the simulated customers know what they read
SUBJECT_MARKERS: list[tuple[str, str, str]] = [
    ("Welcome to Gold", "demo-loyalty-gold", "demo-gold"),
    ("Welcome to", "demo-welcome", "demo-welcome-1"),
    ("our bestsellers", "demo-welcome", "demo-welcome-2"),
    ("left something in your cart", "demo-abandoned-cart", "demo-cart-reminder"),
    ("Thanks for your order", "demo-post-purchase", "demo-thanks-a"),
    ("your order is on its way", "demo-post-purchase", "demo-thanks-b"),
    ("We miss you", "demo-winback", "demo-winback"),
]


def _send(step: str, template: str, nxt: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": step,
        "type": "send",
        "channels": ["email"],
        "template_id": template,
        "next": nxt,
        **extra,
    }


_EXIT = {"id": "done", "type": "exit"}
_PURCHASE = "Order Completed"

#: journey id -> (name, definition)
JOURNEYS: dict[str, tuple[str, dict[str, Any]]] = {
    "demo-welcome": (
        "Welcome series",
        {
            "triggers": [{"kind": "event", "event": "Signed Up"}],
            "entry": {"mode": "once"},
            "goal": {"event": _PURCHASE, "within": "P14D"},
            "steps": [
                _send("hello", "demo-welcome-1", "pause"),
                {"id": "pause", "type": "wait", "duration": "PT1M", "next": "bestsellers"},
                _send("bestsellers", "demo-welcome-2", "done"),
                _EXIT,
            ],
        },
    ),
    "demo-abandoned-cart": (
        "Abandoned cart",
        {
            "triggers": [
                {
                    "kind": "event",
                    "event": "Cart Updated",
                    "where": [{"property": "products", "op": "exists", "value": True}],
                }
            ],
            "entry": {"mode": "one_at_a_time"},
            "goal": {"event": _PURCHASE, "within": "P3D", "ends_run": True},
            "steps": [
                {
                    "id": "wait_order",
                    "type": "wait_for_event",
                    "event": _PURCHASE,
                    "match": {"property": "cart_id"},
                    "timeout": "PT1M",
                    "next": "done",
                    "on_timeout": "remind",
                },
                _send("remind", "demo-cart-reminder", "done", priority="high"),
                _EXIT,
            ],
        },
    ),
    "demo-post-purchase": (
        "Post-purchase A/B (first order)",
        {
            "triggers": [
                {
                    "kind": "event",
                    "event": _PURCHASE,
                    "where": [{"property": "first_order", "op": "eq", "value": True}],
                }
            ],
            "entry": {"mode": "once"},
            "holdout_percent": 10,
            "goal": {"event": _PURCHASE, "within": "P30D"},
            "steps": [
                {
                    "id": "subject-test",
                    "type": "split",
                    "variants": [
                        {"name": "a", "weight": 1, "next": "thanks-a"},
                        {"name": "b", "weight": 1, "next": "thanks-b"},
                    ],
                },
                _send("thanks-a", "demo-thanks-a", "done"),
                _send("thanks-b", "demo-thanks-b", "done"),
                _EXIT,
            ],
        },
    ),
    "demo-winback": (
        "Win-back after 30 days of inactivity",
        {
            "triggers": [{"kind": "segment", "segment_id": LAPSED_SEGMENT[0], "on": "entered"}],
            "entry": {"mode": "cooldown", "cooldown": "P90D"},
            "goal": {"event": _PURCHASE, "within": "P14D"},
            "steps": [_send("offer", "demo-winback", "done"), _EXIT],
        },
    ),
    "demo-loyalty-gold": (
        "Loyalty tier-up: welcome to Gold",
        {
            "triggers": [{"kind": "segment", "segment_id": "demo-gold", "on": "entered"}],
            "entry": {"mode": "cooldown", "cooldown": "P365D"},
            "steps": [_send("welcome", "demo-gold", "done", priority="high"), _EXIT],
        },
    ),
}


def coupon_codes(count: int) -> list[str]:
    """The pool's codes: deterministic, so adding them again adds nothing."""
    return [f"NW15-{i:05d}" for i in range(count)]
