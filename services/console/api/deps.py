"""What the console's routes depend on: the runtime, the session, the CSRF check, and
:func:`render` (a page with the session's CSRF token in its context)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import jinja2
from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from services.console.runtime import Runtime
from services.console.session import Session, SessionSealer, check_csrf
from shared.http.deps import runtime_dependency

#: the rows of a list page: the console asks a service for one page, never a whole table
PAGE = 50
#: a listing's cursor: the last id shown on the page before
AfterQ = Annotated[str | None, Query(max_length=128)]


def page_of(found: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    """The rows to show and the next page's cursor, from a listing asked for one row
    more than a page (that row only tells that another page follows)."""
    return found[:PAGE], (found[PAGE - 1]["id"] if len(found) > PAGE else None)


RuntimeDep = Annotated[Runtime, Depends(runtime_dependency(Runtime))]

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
#: autoescaping on for every template: a trait holding ``<script>`` is shown, not run
templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
)


class SignInRequired(Exception):
    """No valid session: the handler redirects to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


class CsrfRefused(Exception):
    """A form without the session's CSRF token: answered 403."""


def sealer(request: Request) -> SessionSealer:
    found: SessionSealer = request.app.state.sealer
    return found


def require_session(request: Request) -> Session:
    session = sealer(request).open(request)
    if session is None:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        raise SignInRequired(target)
    request.state.session = session
    return session


SessionDep = Annotated[Session, Depends(require_session)]


async def require_csrf(request: Request, session: SessionDep) -> Session:
    """The session, if the request carries its CSRF token: the form field ``csrf`` or
    the ``X-CSRF-Token`` header (the scripts' JSON calls)."""
    given = request.headers.get("x-csrf-token")
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get("csrf")
        given = value if isinstance(value, str) else None
    if not check_csrf(session, given):
        raise CsrfRefused()
    return session


#: a state-changing route: signed in, and the form's CSRF token matches the session's
CsrfDep = Annotated[Session, Depends(require_csrf)]


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    session: Session | None = getattr(request.state, "session", None)
    context.setdefault("note", NOTES.get(request.query_params.get("note", ""), ""))
    return templates.TemplateResponse(
        request,
        name,
        {"csrf": session.csrf if session else "", "signed_in": session is not None, **context},
        status_code=status_code,
    )


def see_other(url: str) -> RedirectResponse:
    """After a form's POST (or a search with one answer): go to ``url`` (303, a GET)."""
    return RedirectResponse(url, status_code=303)


def quoted(value: str) -> str:
    """A path segment: ids may hold ``/``, ``?`` or ``#``."""
    return quote(value, safe="")


#: the fixed messages a redirect may ask a page to show (``?note=``): never text from
#: the URL itself
NOTES = {
    "signed-out": "You are signed out.",
    "erased": "The customer was erased.",
    "preferences": "Preferences saved.",
    "segment-saved": "Segment saved; its members are being computed.",
    "template-saved": "Template saved as a new version.",
    "published": "Published.",
    "policy-saved": "Send policy saved.",
    "draft-saved": "Draft saved; publish it to make it the live version.",
    "paused": "Paused: no new entrants.",
    "resumed": "Resumed.",
    "archived": "Archived: every run in flight exited.",
}


def _when(value: Any) -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM`` (UTC, as the services answer)."""
    if not value:
        return "—"
    text = str(value)
    return text[:16].replace("T", " ") if len(text) >= 16 and text[10] == "T" else text


def _pct(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:.1f} %"


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{float(value):,.{digits}f}"


templates.env.filters.update(when=_when, pct=_pct, num=_num, path=quoted)
