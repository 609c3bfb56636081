"""Every service's ``/docs`` and ``/redoc`` work offline: the pages name no other host,
and every script, stylesheet and icon they load answers from the service itself."""

from __future__ import annotations

import re

import httpx
import pytest

from tenure.services import SERVICES
from tests.support.services import build_app, environment, service_env

_ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
@pytest.mark.parametrize("name", sorted(SERVICES))
async def test_the_docs_pages_load_only_local_assets(name: str, page: str) -> None:
    # no lifespan runs: the servers named are never reached
    env = service_env(name, bootstrap_servers="127.0.0.1:9", database_url="postgresql://x@/x")
    with environment(env):
        app = build_app(name)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        answer = await client.get(page)
        assert answer.status_code == 200, answer.text
        html = answer.text
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html), html
        assets = {a or b for a, b in _ASSET.findall(html)}
        assert any(asset.endswith(".js") for asset in assets), assets
        for asset in assets:
            loaded = await client.get(asset)
            assert loaded.status_code == 200, asset
            assert loaded.content, asset
