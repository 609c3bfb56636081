"""What a batch of events adds to the interactions table, folded in Python before one
set-based upsert (see :func:`services.segmenter.repository.recommendations.add_interactions`).

The Segment e-commerce spec: a purchase (``Order Completed`` by default) lists its
``products[]``, each with ``product_id`` (``sku`` or ``id`` accepted), ``category`` and
``quantity``; ``Product Viewed`` carries ``product_id`` and ``category`` at the top of its
properties. One row per (customer, product, kind) per batch: counts summed (a purchase
counts its quantity), the latest time kept, the latest category seen for each product.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.segmenter.recommend.model import PURCHASE, VIEW
from shared.events.customer_events import CustomerEvent

PRODUCT_VIEWED = "Product Viewed"
#: bounds on what one event may add (a malformed or hostile event stays cheap)
MAX_PRODUCTS_PER_EVENT = 200
MAX_ID_LENGTH = 200
MAX_QUANTITY = 1_000


@dataclass
class BatchInteractions:
    #: (customer, product, kind) → [count, last_at]
    rows: dict[tuple[str, str, int], list[Any]] = field(default_factory=dict)
    #: product → category (the latest seen in the batch)
    categories: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.rows)

    def add(self, customer: str, product: str, kind: int, count: int, at: datetime) -> None:
        key = (customer, product, kind)
        row = self.rows.get(key)
        if row is None:
            self.rows[key] = [count, at]
        else:
            row[0] += count
            if at > row[1]:
                row[1] = at

    def columns(self) -> tuple[list[str], list[str], list[int], list[int], list[datetime]]:
        """Rows as columns, sorted by key (one lock order for every writer)."""
        keys = sorted(self.rows)
        return (
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            [self.rows[k][0] for k in keys],
            [self.rows[k][1] for k in keys],
        )


def fold_interactions(
    events: Iterable[tuple[str, CustomerEvent]],
    *,
    purchase_event: str,
    view_event: str = PRODUCT_VIEWED,
    into: BatchInteractions | None = None,
) -> BatchInteractions:
    """Fold ``(customer id after alias resolution, event)`` pairs."""
    out = into if into is not None else BatchInteractions()
    for customer, event in events:
        name = event.event
        if name == purchase_event:
            products = event.properties.get("products")
            if not isinstance(products, list):
                continue
            for item in products[:MAX_PRODUCTS_PER_EVENT]:
                if not isinstance(item, dict):
                    continue
                product = _product_id(item)
                if product is None:
                    continue
                out.add(customer, product, PURCHASE, _quantity(item), event.timestamp)
                _category(out, product, item)
        elif name == view_event:
            product = _product_id(event.properties)
            if product is not None:
                out.add(customer, product, VIEW, 1, event.timestamp)
                _category(out, product, event.properties)
    return out


def _product_id(item: Mapping[str, Any]) -> str | None:
    for key in ("product_id", "productId", "sku", "id"):
        value = item.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, str | int):
            text = str(value).strip()
            if 0 < len(text) <= MAX_ID_LENGTH and "\x00" not in text:
                return text
    return None


def _quantity(item: Mapping[str, Any]) -> int:
    value = item.get("quantity", 1)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return 1
    return int(min(max(value, 1), MAX_QUANTITY))


def _category(out: BatchInteractions, product: str, item: Mapping[str, Any]) -> None:
    value = item.get("category")
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and "\x00" not in value:
        out.categories[product] = value
