"""What a journey names in other services: segments (the segmenter's) and templates
(the dispatcher's), checked when it is published.

The journey asks the segmenter and the dispatcher over their admin APIs
(``GET /v1/segments/{id}``, ``GET /v1/templates/{id}?version=N``) rather than
keeping projections of their catalogs: a publish is rare and must see the catalog
as it is now. A name that does not exist is a 422 naming it; a service that cannot
be asked is a 503 (publish again once it is up). A service whose URL is not set
is not asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel

from shared.http.problems import Invalid, Unavailable

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Reference:
    kind: str  # "segment" or "template"
    name: str
    version: int | None
    loc: Loc

    def describe(self) -> str:
        if self.version is not None:
            return f"{self.kind} {self.name!r} version {self.version}"
        return f"{self.kind} {self.name!r}"


def references(value: Any, loc: Loc = ()) -> Iterator[Reference]:
    """Every segment and template a journey definition names, with where."""
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        for name in fields:
            child = getattr(value, name)
            if child is None:
                continue
            if name in ("segment_id", "audience_segment") and isinstance(child, str):
                yield Reference("segment", child, None, (*loc, name))
            elif name == "template_id" and isinstance(child, str):
                version = getattr(value, "template_version", None)
                yield Reference("template", child, version, (*loc, name))
            else:
                yield from references(child, (*loc, name))
    elif isinstance(value, list | tuple):
        for index, child in enumerate(value):
            yield from references(child, (*loc, index))
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from references(child, (*loc, str(key)))


@dataclass(frozen=True)
class ReferenceChecker:
    segmenter_url: str
    dispatcher_url: str
    token: str
    timeout_s: float = 5.0

    async def check(self, definition: BaseModel) -> None:
        """Invalid (422) naming every missing one; Unavailable (503) when unasked."""
        wanted: dict[tuple[str, str, int | None], Reference] = {}
        for ref in references(definition):
            wanted.setdefault((ref.kind, ref.name, ref.version), ref)
        asked = [ref for ref in wanted.values() if self._url(ref)]
        if not asked:
            return
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(timeout=self.timeout_s, headers=headers) as client:
            found = await asyncio.gather(*(self._exists(client, ref) for ref in asked))
        missing = [ref for ref, exists in zip(asked, found, strict=True) if not exists]
        if missing:
            raise Invalid(
                "the journey names what does not exist: "
                + ", ".join(ref.describe() for ref in missing),
                errors=[
                    {
                        "loc": ["body", "definition", *ref.loc],
                        "msg": f"no {ref.describe()}",
                        "type": f"unknown_{ref.kind}",
                    }
                    for ref in missing
                ],
            )

    def _url(self, ref: Reference) -> str:
        base = self.segmenter_url if ref.kind == "segment" else self.dispatcher_url
        if not base:
            return ""
        path = "/v1/segments/" if ref.kind == "segment" else "/v1/templates/"
        return base.rstrip("/") + path + httpx.URL(ref.name).raw_path.decode()

    async def _exists(self, client: httpx.AsyncClient, ref: Reference) -> bool:
        service = "segmenter" if ref.kind == "segment" else "dispatcher"
        params = {"version": ref.version} if ref.version is not None else None
        try:
            answer = await client.get(self._url(ref), params=params)
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"cannot check {ref.describe()}: the {service} does not answer ({exc!r}); "
                "publish again once it is up"
            ) from None
        if answer.status_code == 404:
            return False
        if answer.status_code != 200:
            raise Unavailable(
                f"cannot check {ref.describe()}: the {service} answered {answer.status_code}"
                + (
                    " (is TENURE_JOURNEY_PEER_TOKEN its admin token?)"
                    if answer.status_code in (401, 403)
                    else ""
                )
            )
        if ref.kind == "template" and ref.version is None:
            # an archived template's latest version is refused when sent
            return not bool(answer.json().get("archived"))
        return True
