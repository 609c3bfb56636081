"""Every HTTP call ``tenure demo`` makes, in one place: the documented request shapes
of ingest, segmenter, journey, dispatcher and metrics (docs/services/*.md). When an
API changes shape, this is the one module to adjust.

Creating something that exists (409) counts as done: a second run changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from tenure.services import SERVICES


class ApiError(RuntimeError):
    """An answer the demo cannot go on from: the call and what the service said."""


@dataclass(frozen=True)
class Endpoints:
    ingest: str
    segmenter: str
    journey: str
    dispatcher: str
    metrics: str

    @classmethod
    def from_base_port(cls, base_port: int | None, host: str = "127.0.0.1") -> Endpoints:
        """The ports ``tenure dev`` gives the services (``--base-port`` or their own)."""
        urls = {
            name: f"http://{host}:{spec.port if base_port is None else base_port + index}"
            for index, (name, spec) in enumerate(SERVICES.items())
        }
        return cls(**{name: urls[name] for name in cls.__dataclass_fields__})


class Api:
    def __init__(self, endpoints: Endpoints, write_key: str, admin_token: str) -> None:
        self.urls = endpoints
        self.http = httpx.Client(timeout=60.0)
        self._write = (write_key, "")
        self._admin = {"Authorization": f"Bearer {admin_token}"}

    def close(self) -> None:
        self.http.close()

    # --- plumbing ------------------------------------------------------------------------

    def _admin_call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        ok: Sequence[int] = (200, 201, 204),
    ) -> httpx.Response:
        answer = self.http.request(method, url, json=json, params=params, headers=self._admin)
        if answer.status_code not in ok:
            raise ApiError(f"{method} {url} answered {answer.status_code}: {answer.text[:600]}")
        return answer

    def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        return self._admin_call(method, url, **kwargs).json()

    def _create(self, url: str, body: dict[str, Any]) -> bool:
        """POST a new resource: True when created, False when it existed already."""
        answer = self._admin_call("POST", url, json=body, ok=(200, 201, 409))
        return answer.status_code != 409

    def ready(self) -> dict[str, bool]:
        out = {}
        for name in Endpoints.__dataclass_fields__:
            try:
                answer = self.http.get(f"{getattr(self.urls, name)}/readyz", timeout=3)
                out[name] = answer.status_code == 200
            except httpx.TransportError:
                out[name] = False
        return out

    def consumed(self, service: str, topic: str = "customer.events") -> float:
        """How many messages of ``topic`` the service's consumer has committed since it
        started (``tenure_kafka_consumed_messages_total`` on its ``/metrics``; the least
        of its consumer groups)."""
        answer = self.http.get(f"{getattr(self.urls, service)}/metrics", timeout=10)
        if answer.status_code != 200:
            return 0.0
        per_group = [
            float(line.rsplit(" ", 1)[1])
            for line in answer.text.splitlines()
            if line.startswith("tenure_kafka_consumed_messages_total{")
            and f'topic="{topic}"' in line
        ]
        return min(per_group, default=0.0)

    # --- ingest (Segment HTTP API, write key as Basic username) --------------------------

    def batch(self, calls: list[dict[str, Any]], *, historical: bool = False) -> int:
        """Send calls (each with ``type`` and a deterministic ``messageId``); the
        accepted count. ``historical``: through ``/v1/import`` (backfill by timestamp)."""
        path = "/v1/import" if historical else "/v1/batch"
        answer = self.http.post(
            f"{self.urls.ingest}{path}", json={"batch": calls}, auth=self._write
        )
        if answer.status_code != 200:
            raise ApiError(f"POST {path} answered {answer.status_code}: {answer.text[:600]}")
        body = answer.json()
        if body.get("rejected"):
            raise ApiError(f"POST {path} rejected calls: {body['rejected'][:3]}")
        return int(body.get("accepted", len(calls)))

    # --- segmenter -----------------------------------------------------------------------

    def create_segment(self, segment_id: str, name: str, rule: dict[str, Any]) -> bool:
        body = {"id": segment_id, "name": name, "rule": rule}
        return self._create(f"{self.urls.segmenter}/v1/segments", body)

    def update_segment(self, segment_id: str, rule: dict[str, Any]) -> None:
        """A new version of the segment with ``rule``: its members are recomputed."""
        self._admin_call(
            "PUT", f"{self.urls.segmenter}/v1/segments/{segment_id}", json={"rule": rule}
        )

    def segment(self, segment_id: str) -> dict[str, Any] | None:
        answer = self._admin_call(
            "GET", f"{self.urls.segmenter}/v1/segments/{segment_id}", ok=(200, 404)
        )
        return answer.json() if answer.status_code == 200 else None

    def put_loyalty_program(self, program: dict[str, Any]) -> None:
        self._admin_call("PUT", f"{self.urls.segmenter}/v1/loyalty/program", json=program)

    def put_product(self, product_id: str, body: dict[str, Any]) -> None:
        self._admin_call("PUT", f"{self.urls.segmenter}/v1/products/{product_id}", json=body)

    def profile(self, customer_id: str) -> dict[str, Any] | None:
        answer = self._admin_call(
            "GET", f"{self.urls.segmenter}/v1/profiles/{customer_id}", ok=(200, 404)
        )
        return answer.json() if answer.status_code == 200 else None

    def recompute_recommendations(self) -> None:
        self._admin_call(
            "POST", f"{self.urls.segmenter}/v1/recommendations/recompute", ok=(200, 409)
        )

    def refit_scores(self) -> None:
        self._admin_call("POST", f"{self.urls.segmenter}/v1/scores/refit", ok=(200, 409, 422))

    def refresh_loyalty(self) -> None:
        self._admin_call("POST", f"{self.urls.segmenter}/v1/loyalty/refresh", ok=(200, 204, 409))

    # --- dispatcher ----------------------------------------------------------------------

    def create_template(self, template_id: str, definition: dict[str, Any]) -> bool:
        body = {"id": template_id, "definition": definition}
        return self._create(f"{self.urls.dispatcher}/v1/templates", body)

    def create_coupon_pool(self, pool_id: str, name: str, low_water: int) -> bool:
        body = {"id": pool_id, "name": name, "low_water": low_water}
        return self._create(f"{self.urls.dispatcher}/v1/coupon-pools", body)

    def add_coupon_codes(self, pool_id: str, codes: list[str]) -> int:
        answer = self._admin_call(
            "POST", f"{self.urls.dispatcher}/v1/coupon-pools/{pool_id}/codes", json={"codes": codes}
        )
        return int(answer.json().get("added", 0))

    def coupon_pool(self, pool_id: str) -> dict[str, Any]:
        pool: dict[str, Any] = self._json(
            "GET", f"{self.urls.dispatcher}/v1/coupon-pools/{pool_id}"
        )
        return pool

    def track_link(self, url: str) -> int:
        """Follow a tracking link as a mail client does (no redirect followed)."""
        return self.http.get(url, follow_redirects=False).status_code

    def answer_survey(self, url: str, comment: str = "") -> int:
        return self.http.post(url, data={"comment": comment}, follow_redirects=False).status_code

    # --- journey -------------------------------------------------------------------------

    def create_journey(self, journey_id: str, name: str, definition: dict[str, Any]) -> bool:
        body = {"id": journey_id, "name": name, "definition": definition}
        return self._create(f"{self.urls.journey}/v1/journeys", body)

    def publish_journey(self, journey_id: str) -> bool:
        """Publish unless it is live already (publishing again would make a new version)."""
        state = self._admin_call("GET", f"{self.urls.journey}/v1/journeys/{journey_id}").json()
        if state.get("status") == "active":
            return False
        self._admin_call("POST", f"{self.urls.journey}/v1/journeys/{journey_id}/publish")
        return True

    # --- metrics -------------------------------------------------------------------------

    def kpi(self, name: str, **params: Any) -> Any:
        return self._admin_call(
            "GET", f"{self.urls.metrics}/v1/kpis/{name}", params=params or None
        ).json()

    def evaluate_experiments(self) -> None:
        self._admin_call("POST", f"{self.urls.metrics}/v1/experiments/evaluate")

    def experiments(self, journey_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._json(
            "GET", f"{self.urls.metrics}/v1/experiments", params={"journey_id": journey_id}
        )
        return found
