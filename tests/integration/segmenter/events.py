"""Customer events as ingest would publish them, for the segmenter's tests."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from shared.events.customer_events import CustomerEvent


def event(kind: str, customer_id: str | None, at: datetime, **fields: Any) -> CustomerEvent:
    data: dict[str, Any] = {
        "type": kind,
        "messageId": f"m-{uuid.uuid4()}",
        "userId": customer_id,
        "timestamp": at,
        "receivedAt": at,
        **fields,
    }
    if data.get("userId") is None:
        data.pop("userId")
    return CustomerEvent.model_validate(data)


def run_id() -> str:
    return uuid.uuid4().hex[:10]
