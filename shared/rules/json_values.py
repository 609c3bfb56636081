"""Comparisons of JSON values as PostgreSQL's ``jsonb`` makes them.

The segmenter's Python predicates must agree with its SQL ones, so these follow
``jsonb``: numbers compare as the exact decimals of their JSON text, strings only
equal strings, booleans only booleans. The journey's property filters and branches
use the same functions, so a condition means the same thing in both services.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "neq": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def is_number(value: object) -> bool:
    """Whether ``value`` is a JSON number (booleans are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def exact_decimal(number: int | float) -> Decimal:
    """The exact value PostgreSQL reads from the JSON text of ``number``."""
    return Decimal(number) if isinstance(number, int) else Decimal(repr(number))


def compare_numbers(a: int | float, b: int | float) -> int:
    """-1, 0 or 1 as jsonb compares the numbers: as exact decimals of their JSON text."""
    if type(a) is not type(b):
        a, b = exact_decimal(a), exact_decimal(b)  # type: ignore[assignment]
    return (a > b) - (a < b)


def json_equal(a: object, b: object) -> bool:
    """JSON (jsonb) equality: ``1 == 1.0``, but ``"1" != 1`` and ``true != 1``."""
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a):
        return is_number(b) and compare_numbers(a, b) == 0  # type: ignore[arg-type]
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list | tuple):
        return (
            isinstance(b, list | tuple)
            and len(a) == len(b)
            and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, Mapping):
        return (
            isinstance(b, Mapping)
            and a.keys() == b.keys()
            and all(json_equal(a[key], b[key]) for key in a)
        )
    return False
