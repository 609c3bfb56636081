"""Issue 21: what storage cannot hold (NUL, a lone surrogate, NaN, Infinity, a template
version beyond a PostgreSQL integer) is a 422 naming the field, not a 500."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.journey.conftest import ADMIN, Stack


def _document() -> dict[str, Any]:
    return {
        "triggers": [{"kind": "event", "event": "Signed Up"}],
        "steps": [
            {
                "id": "b",
                "type": "branch",
                "cases": [
                    {
                        "when": {"kind": "score", "score": "churn_risk", "op": "gt", "value": 0.5},
                        "next": "s",
                    }
                ],
                "otherwise": "s",
            },
            {
                "id": "s",
                "type": "split",
                "variants": [
                    {"name": "a", "weight": 1, "next": "mail"},
                    {"name": "b", "weight": 1, "next": "mail"},
                ],
            },
            {
                "id": "mail",
                "type": "send",
                "channels": ["email"],
                "template_id": "t",
                "context": {"k": "v"},
                "next": "x",
            },
            {"id": "x", "type": "exit"},
        ],
    }


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        target: Any = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _context_key(body: dict[str, Any]) -> None:
    body["definition"]["steps"][2]["context"] = {"bad\ud800": 1}


CASES = {
    "nul in name": _set(("name",), "a\x00b"),
    "nul in description": _set(("description",), "a\x00b"),
    "nul in trigger event": _set(("definition", "triggers", 0, "event"), "Sign\x00ed"),
    "nul in step context": _set(("definition", "steps", 2, "context", "k"), "v\x00"),
    "lone surrogate in name": _set(("name",), "a\ud800"),
    "lone surrogate in a context key": _context_key,
    "nan in a score condition": _set(
        ("definition", "steps", 0, "cases", 0, "when", "value"), float("nan")
    ),
    "infinity as a split weight": _set(
        ("definition", "steps", 1, "variants", 0, "weight"), float("inf")
    ),
    "template version beyond int4": _set(("definition", "steps", 2, "template_version"), 2**31),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_unstorable_input_is_a_422(stack: Stack, case: str) -> None:
    body: dict[str, Any] = {"name": "ok", "description": "d", "definition": _document()}
    CASES[case](body)
    # NaN and Infinity as JSON literals (what Python's json and many clients write)
    content = json.dumps(body, allow_nan=True)
    answer = await stack.client.post(
        "/v1/journeys",
        content=content,
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


async def test_the_same_document_without_the_bad_value_is_created(stack: Stack) -> None:
    body = {"name": "ok", "description": "d", "definition": copy.deepcopy(_document())}
    answer = await stack.client.post("/v1/journeys", json=body, headers=ADMIN)
    assert answer.status_code == 201, answer.text
