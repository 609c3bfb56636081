"""Sign-in, sign-out and the home page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from services.console.api.deps import CsrfDep, RuntimeDep, SessionDep, render, sealer, see_other

router = APIRouter()


def safe_next(target: str | None) -> str:
    """Only a path of the console itself: no ``//host``, no backslash and no control
    character (browsers drop a tab or newline after the first slash, which makes
    ``//host``), so the sign-in never redirects to another site."""
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and all(" " <= char != "\x7f" for char in target)
    ):
        return target
    return "/customers"


@router.get("/")
async def home(session: SessionDep) -> Response:
    return see_other("/customers")


def _login_form(
    request: Request, runtime: RuntimeDep, *, next: str | None, error: str = "", note: str = ""
) -> Response:
    seal = sealer(request)
    nonce, login_csrf = seal.login_form(request)
    response = render(
        request,
        "login.html",
        status_code=401 if error else 200,
        next=safe_next(next),
        error=error,
        note=note,
        login_csrf=login_csrf,
        configured=bool(runtime.admin_tokens),
    )
    seal.bind_login(response, nonce)
    return response


_LOGIN_NOTES = {
    "expired": "The services no longer accept your token; sign in again.",
    "signed-out": "You are signed out.",
}


@router.get("/login")
async def login_page(request: Request, runtime: RuntimeDep, next: str | None = None) -> Response:
    note = _LOGIN_NOTES.get(request.query_params.get("note", ""), "")
    return _login_form(request, runtime, next=next, note=note)


@router.post("/login")
async def login(
    request: Request,
    runtime: RuntimeDep,
    token: Annotated[str, Form(max_length=1024)] = "",
    csrf: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/customers",
) -> Response:
    seal = sealer(request)
    if not seal.check_login(request, csrf):
        return render(
            request,
            "error.html",
            status_code=403,
            title="Refused",
            detail="The sign-in form is stale or did not come from the console. Reload it.",
        )
    if not runtime.admin_tokens.accepts(token.strip()):
        return _login_form(request, runtime, next=next, error="This admin token is not valid.")
    response = see_other(safe_next(next))
    seal.start(response, token.strip())
    return response


@router.post("/logout")
async def logout(request: Request, session: CsrfDep) -> Response:
    response = see_other("/login?note=signed-out")
    sealer(request).end(response)
    return response
