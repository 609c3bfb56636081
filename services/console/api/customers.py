"""Customers: find one by id or email, the profile page from every service,
preferences, erase.

By email: no service has a lookup by trait, so an address that is not an id is found
with the segmenter's rule preview (``{"kind": "trait", "trait": "email", "op": "eq"}``,
``POST /v1/segments/preview``): a set-based query over every profile, with no index on
traits — fine for thousands of profiles, seconds at millions (docs/console.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from services.console.api.deps import CsrfDep, RuntimeDep, SessionDep, quoted, render, see_other
from services.console.runtime import Runtime, UpstreamError
from services.console.schemas import sections
from shared.events.channels import Channel

router = APIRouter(prefix="/customers")

CHANNELS = [channel.value for channel in Channel]


@router.get("")
async def search(
    request: Request, runtime: RuntimeDep, session: SessionDep, q: str = ""
) -> Response:
    q = q.strip()
    message = ""
    matches: list[str] = []
    if q:
        try:
            profile = await runtime.segmenter.get(f"/v1/profiles/{quoted(q)}", token=session.token)
        except UpstreamError as exc:
            if exc.status != 404:
                raise
            if "@" in q:
                matches = await by_email(runtime, session.token, q)
                if len(matches) == 1:
                    return see_other(f"/customers/{quoted(matches[0])}")
                if not matches:
                    message = f"No customer with the id or email {q!r}."
            else:
                message = f"No customer with the id {q!r}."
        else:
            return see_other(f"/customers/{quoted(profile['customer_id'])}")
    return render(request, "customers/search.html", q=q, message=message, matches=matches)


async def by_email(runtime: Runtime, token: str, email: str) -> list[str]:
    """The ids of the customers whose ``email`` trait is ``email`` (at most 20)."""
    rule = {"kind": "trait", "trait": "email", "op": "eq", "value": email}
    found = await runtime.segmenter.post(
        "/v1/segments/preview", token=token, json={"rule": rule, "sample_size": 20}
    )
    return [str(customer) for customer in found["sample"]]


@router.post("/{customer_id:path}/preferences")
async def save_preferences(
    request: Request, customer_id: str, runtime: RuntimeDep, session: CsrfDep
) -> Response:
    form = await request.form()
    body: dict[str, Any] = {
        "unsubscribed": form.get("unsubscribed") == "on",
        "channels": {channel: form.get(f"channel_{channel}") == "on" for channel in CHANNELS},
    }
    await runtime.dispatcher.call(
        "PATCH", f"/v1/customers/{quoted(customer_id)}/preferences", token=session.token, json=body
    )
    return see_other(f"/customers/{quoted(customer_id)}?note=preferences#preferences")


@router.get("/{customer_id:path}/erase")
async def erase_page(
    request: Request, customer_id: str, runtime: RuntimeDep, session: SessionDep
) -> Response:
    profile = await runtime.segmenter.get(
        f"/v1/profiles/{quoted(customer_id)}", token=session.token
    )
    return render(request, "customers/erase.html", profile=profile, error="")


@router.post("/{customer_id:path}/erase")
async def erase(
    request: Request,
    customer_id: str,
    runtime: RuntimeDep,
    session: CsrfDep,
    confirm: Annotated[str, Form(max_length=512)] = "",
    suppress: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    if confirm.strip() != customer_id:
        profile = await runtime.segmenter.get(
            f"/v1/profiles/{quoted(customer_id)}", token=session.token
        )
        return render(
            request,
            "customers/erase.html",
            status_code=422,
            profile=profile,
            error="Type the customer's id exactly to confirm.",
        )
    await runtime.segmenter.call(
        "DELETE",
        f"/v1/profiles/{quoted(customer_id)}",
        token=session.token,
        params={"suppress": "true" if suppress == "on" else None},
    )
    return see_other("/customers?note=erased")


#: declared last: ``{customer_id:path}`` would also match ``…/erase``
@router.get("/{customer_id:path}")
async def profile_page(
    request: Request,
    customer_id: str,
    runtime: RuntimeDep,
    session: SessionDep,
    runs_after: Annotated[str | None, Query(max_length=256)] = None,
    deliveries_after: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    token = session.token
    path = quoted(customer_id)
    profile = await runtime.segmenter.get(f"/v1/profiles/{path}", token=token)
    known = quoted(profile["customer_id"])
    loyalty, recommendations, runs, deliveries, preferences = await sections(
        runtime.segmenter.get(f"/v1/loyalty/{known}", token=token),
        runtime.segmenter.get(f"/v1/recommendations/{known}", token=token),
        runtime.journey.get(
            f"/v1/customers/{known}/runs", token=token, limit=50, steps="true", after=runs_after
        ),
        runtime.dispatcher.get(
            f"/v1/customers/{known}/deliveries", token=token, limit=51, after=deliveries_after
        ),
        runtime.dispatcher.get(f"/v1/customers/{known}/preferences", token=token),
    )
    return render(
        request,
        "customers/profile.html",
        profile=profile,
        scores=profile.get("scores") or {},
        loyalty=loyalty,
        recommendations=recommendations,
        runs=runs,
        deliveries=deliveries,
        preferences=preferences,
        channels=CHANNELS,
    )
