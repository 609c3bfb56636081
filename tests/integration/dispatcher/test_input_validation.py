"""Issue 21: the dispatcher's bodies refuse what storage cannot hold with a 422."""

from __future__ import annotations

import json

import pytest

from tests.integration.dispatcher.conftest import ADMIN, Stack

TEMPLATE = {"name": "t", "variants": [{"channel": "email", "subject": "s", "text": "x"}]}

CASES = [
    ("PATCH", "/v1/customers/ann/preferences", {"topics": {"bad\ud800": True}}),
    ("PATCH", "/v1/customers/ann/preferences", {"topics": {"n\x00": True}}),
    ("POST", "/v1/templates", {"id": "..", "definition": TEMPLATE}),
    ("POST", "/v1/templates", {"id": ".", "definition": TEMPLATE}),
    (
        "POST",
        "/v1/templates",
        {"definition": {**TEMPLATE, "name": "lone \ud800"}},
    ),
    (
        "POST",
        "/v1/test-sends",
        {"customer_id": "ann", "template_id": "t", "context": {"k": float("nan")}},
    ),
]


@pytest.mark.parametrize(("method", "path", "body"), CASES)
async def test_unstorable_input_is_a_422(
    stack: Stack, method: str, path: str, body: dict[str, object]
) -> None:
    answer = await stack.client.request(
        method,
        path,
        content=json.dumps(body, allow_nan=True),
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text


async def test_an_id_with_dots_and_letters_is_still_fine(stack: Stack) -> None:
    answer = await stack.client.post(
        "/v1/templates", json={"id": "v1.2-spring", "definition": TEMPLATE}, headers=ADMIN
    )
    assert answer.status_code == 201, answer.text
