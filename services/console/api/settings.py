"""Settings: the dispatcher's send policy (caps, quiet hours, default timezone,
best-time threshold; editable as JSON), subscription topics, coupon pools with the codes
left, and the loyalty program's rules and tiers (segmenter)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from services.console.api.deps import CsrfDep, RuntimeDep, SessionDep, render, see_other
from services.console.runtime import Runtime, UpstreamError
from services.console.schemas import FieldErrors, parse_json_object, pretty, sections

router = APIRouter(prefix="/settings")


async def _page(
    request: Request,
    runtime: Runtime,
    token: str,
    *,
    policy_text: str | None = None,
    errors: FieldErrors | None = None,
    status_code: int = 200,
) -> Response:
    policy, topics, pools, loyalty = await sections(
        runtime.dispatcher.get("/v1/policy", token=token),
        runtime.dispatcher.get("/v1/topics", token=token),
        runtime.dispatcher.get("/v1/coupon-pools", token=token),
        runtime.segmenter.get("/v1/loyalty/program", token=token),
    )
    return render(
        request,
        "settings.html",
        status_code=status_code,
        policy=policy,
        policy_text=policy_text if policy_text is not None else pretty(policy.data or {}),
        topics=topics,
        pools=pools,
        loyalty=loyalty,
        errors=errors or FieldErrors(),
    )


@router.get("")
async def settings_page(request: Request, runtime: RuntimeDep, session: SessionDep) -> Response:
    return await _page(request, runtime, session.token)


@router.post("/policy")
async def save_policy(
    request: Request,
    runtime: RuntimeDep,
    session: CsrfDep,
    policy: Annotated[str, Form(max_length=100_000)] = "",
) -> Response:
    errors = FieldErrors()
    document = parse_json_object(policy, errors, "policy")
    if document is not None:
        try:
            await runtime.dispatcher.call("PUT", "/v1/policy", token=session.token, json=document)
        except UpstreamError as exc:
            if exc.status != 422:
                raise
            errors = FieldErrors.from_problem(exc, {}).gathered("policy")
        else:
            return see_other("/settings?note=policy-saved#policy")
    return await _page(
        request, runtime, session.token, policy_text=policy, errors=errors, status_code=422
    )
