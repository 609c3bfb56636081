"""What the console runs on: one ``httpx.AsyncClient`` per service, built in the lifespan.

Every call carries the signed-in user's admin token as its bearer: the services, not
the console, decide what the token may do. An answer of 400 or more becomes an
:class:`UpstreamError` holding the service's problem details; a service that cannot be
reached (or does not answer in time) is an :class:`UpstreamError` with status 502.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from services.console.settings import ConsoleSettings
from shared.auth import TokenDigests


class UpstreamError(Exception):
    """A service answered a problem, or could not be reached (``status`` 502)."""

    def __init__(self, service: str, status: int, problem: dict[str, Any]) -> None:
        self.service = service
        self.status = status
        self.problem = problem
        super().__init__(f"{service}: {status} {self.detail}")

    @property
    def detail(self) -> str:
        detail = self.problem.get("detail") or self.problem.get("title") or ""
        return str(detail)

    @property
    def errors(self) -> list[dict[str, Any]]:
        errors = self.problem.get("errors")
        return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


class Upstream:
    """One service's admin API, called with a user's token."""

    def __init__(self, name: str, client: httpx.AsyncClient) -> None:
        self.name = name
        self.client = client

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """The JSON answer (``None`` for 204 and text answers' body as a string)."""
        try:
            answer = await self.client.request(
                method,
                path,
                json=json,
                params={k: v for k, v in (params or {}).items() if v is not None},
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise UpstreamError(
                self.name,
                502,
                {
                    "title": "Bad Gateway",
                    "detail": f"the {self.name} service did not answer ({type(exc).__name__})",
                },
            ) from None
        if answer.status_code >= 400:
            try:
                problem = answer.json()
            except ValueError:
                problem = {}
            if not isinstance(problem, dict):
                problem = {}
            problem.setdefault("detail", answer.reason_phrase)
            raise UpstreamError(self.name, answer.status_code, problem)
        if answer.status_code == 204 or not answer.content:
            return None
        if answer.headers.get("content-type", "").startswith("text/"):
            return answer.text
        return answer.json()

    async def get(self, path: str, *, token: str, **params: Any) -> Any:
        return await self.call("GET", path, token=token, params=params)

    async def post(self, path: str, *, token: str, json: Any = None, **params: Any) -> Any:
        return await self.call("POST", path, token=token, json=json, params=params)


class Runtime:
    """The clients, the accepted tokens and the session key; :meth:`start` and
    :meth:`stop` bracket the app's life."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        group = settings.console
        self.admin_tokens = TokenDigests(group.admin_token_digests)
        self.session_key = group.session_key()
        self.upstreams = {
            name: Upstream(
                name,
                httpx.AsyncClient(
                    base_url=url,
                    timeout=group.upstream_timeout_s,
                    limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
                ),
            )
            for name, url in group.upstream_urls().items()
        }
        self.ingest = self.upstreams["ingest"]
        self.segmenter = self.upstreams["segmenter"]
        self.journey = self.upstreams["journey"]
        self.dispatcher = self.upstreams["dispatcher"]
        self.metrics = self.upstreams["metrics"]

    async def start(self, app: FastAPI) -> None:
        """Nothing to connect: the clients connect on first use. ``/readyz`` has no
        checks of the services on purpose: the console has no dependency of its own, and
        a page shows which service did not answer (one down service must not take the
        console, and the pages of the others, out of a load balancer)."""

    async def stop(self) -> None:
        for upstream in self.upstreams.values():
            await upstream.client.aclose()
