"""Health, readiness, metrics and request ids, as SRE teams see them."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.ingest.conftest import AUTH

#: (name, sorted labels) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"broker": "ok"}}


async def test_metrics_count_received_and_rejected_by_type_and_reason(
    client: httpx.AsyncClient,
) -> None:
    before = _samples((await client.get("/metrics")).text)
    ok = await client.post("/v1/identify", json={"userId": "m1"}, headers=AUTH)
    assert ok.status_code == 200
    assert (await client.post("/v1/track", json={"userId": "m1"}, headers=AUTH)).status_code == 400
    after = _samples((await client.get("/metrics")).text)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("tenure_ingest_events_received_total", type="identify") == 1
    assert delta("tenure_ingest_events_rejected_total", type="track", reason="missing_field") == 1
    assert delta("tenure_ingest_publish_seconds_count") == 1
    assert (
        delta(
            "tenure_http_request_duration_seconds_count",
            method="POST",
            route="/v1/track",
            status="400",
        )
        == 1
    )
    labels_seen = {(key, value) for _, labels in after for key, value in labels}
    assert not any(value == "m1" for _, value in labels_seen), "a customer id became a label"
    assert not {key for key, _ in labels_seen} & {"userId", "anonymousId", "customer_id"}


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.get("/healthz")
    assert len(made.headers["x-request-id"]) == 32


async def test_openapi_lists_every_tracking_endpoint(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for call in ("track", "identify", "page", "screen", "group", "alias", "batch", "import"):
        assert f"/v1/{call}" in paths
