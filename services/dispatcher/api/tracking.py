"""The public endpoints a message's links lead to (no token: the link is signed).

===========================  =====================================================
``GET /t/o/{token}``         open pixel → ``Email Opened``
``GET /t/c/{token}``         click → ``Email Link Clicked`` (or ``Message Link
                             Clicked``), then a redirect to the URL that was signed
``GET /t/u/{token}``         unsubscribe confirm page (mail scanners prefetch links)
``POST /t/u/{token}``        unsubscribe (RFC 8058 one-click) → ``Unsubscribed``
``GET|POST /t/p/{token}``    preference page: topics and channels
``GET|POST /t/s/{token}``    survey: the score shown with an optional comment;
                             the POST records ``Survey Answered``
``GET|POST /t/push-opened/{token}``  push opened → ``Push Opened``
===========================  =====================================================

The pages are Jinja2 templates (:mod:`services.dispatcher.pages`); what each records,
:mod:`services.dispatcher.tracking`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from services.dispatcher import metrics, tracking
from services.dispatcher.api.deps import RuntimeDep
from services.dispatcher.links import LinkPayload, LinkRefused, Purpose
from services.dispatcher.pages import NO_STORE, render
from shared.events import engagement
from shared.http.problems import ApiError, NotFound

router = APIRouter(prefix="/t", tags=["tracking"], include_in_schema=False)

#: a transparent 1×1 GIF
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)


class Gone(ApiError):
    status = 410
    code = "gone"


def _verify(runtime: RuntimeDep, purpose: Purpose, token: str) -> LinkPayload:
    try:
        return runtime.signer.verify(purpose, token)
    except LinkRefused as exc:
        metrics.LINKS_REFUSED.labels(purpose.value).inc()
        raise (Gone if "expired" in exc.reason else NotFound)(exc.reason) from None


def _client(request: Request) -> dict[str, Any]:
    agent = request.headers.get("user-agent")
    return {"userAgent": agent[:512]} if agent else {}


async def _track(
    runtime: RuntimeDep,
    request: Request,
    dispatch_id: str,
    event: str,
    *,
    learn_hour: bool = False,
    message_id: str | None = None,
    properties: dict[str, Any] | None = None,
) -> None:
    recorded = await tracking.track(
        runtime.engine,
        dispatch_id=dispatch_id,
        event=event,
        now=runtime.clock(),
        client=_client(request),
        learn_hour=learn_hour,
        message_id=message_id,
        properties=properties,
    )
    runtime.relay.notify()
    metrics.TRACKED.labels(recorded).inc()


# --- opens and clicks ------------------------------------------------------------------


@router.get("/o/{token}")
async def open_pixel(token: str, request: Request, runtime: RuntimeDep) -> Response:
    payload = _verify(runtime, Purpose.OPEN, token)
    await _track(runtime, request, payload.dispatch_id, engagement.EMAIL_OPENED, learn_hour=True)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.get("/c/{token}")
async def click(token: str, request: Request, runtime: RuntimeDep) -> Response:
    payload = _verify(runtime, Purpose.CLICK, token)
    target = payload.target or ""
    if not target.startswith(("https://", "http://")):
        raise NotFound("the link is not valid")
    await _track(
        runtime,
        request,
        payload.dispatch_id,
        engagement.EMAIL_LINK_CLICKED,
        learn_hour=True,
        properties={engagement.URL: target},
    )
    return RedirectResponse(target, status_code=302, headers=NO_STORE)


@router.api_route("/push-opened/{token}", methods=["GET", "POST"])
async def push_opened(token: str, request: Request, runtime: RuntimeDep) -> Response:
    payload = _verify(runtime, Purpose.PUSH_OPENED, token)
    await _track(runtime, request, payload.dispatch_id, engagement.PUSH_OPENED, learn_hour=True)
    return Response(status_code=204, headers=NO_STORE)


# --- unsubscribe -------------------------------------------------------------------------


@router.get("/u/{token}")
async def unsubscribe_page(token: str, request: Request, runtime: RuntimeDep) -> Response:
    _verify(runtime, Purpose.UNSUBSCRIBE, token)
    return render("unsubscribe", title="Unsubscribe", action=request.url.path)


@router.post("/u/{token}")
async def unsubscribe(token: str, request: Request, runtime: RuntimeDep) -> Response:
    """One click (RFC 8058: ``List-Unsubscribe=One-Click`` in the body) or the confirm
    page's button: off the message's subscription topic, or off everything when the
    message has none."""
    payload = _verify(runtime, Purpose.UNSUBSCRIBE, token)
    topic = await tracking.unsubscribe(
        runtime.engine,
        dispatch_id=payload.dispatch_id,
        now=runtime.clock(),
        client=_client(request),
    )
    runtime.relay.notify()
    metrics.TRACKED.labels(engagement.UNSUBSCRIBED).inc()
    return render("unsubscribed", title="Unsubscribed", topic=topic)


# --- preference page ---------------------------------------------------------------------


@router.get("/p/{token}")
async def preferences_page(token: str, request: Request, runtime: RuntimeDep) -> Response:
    payload = _verify(runtime, Purpose.PREFERENCES, token)
    unsubscribed, topics, channels = await tracking.preference_choices(
        runtime.engine, dispatch_id=payload.dispatch_id
    )
    return render(
        "preferences",
        title="Your preferences",
        action=request.url.path,
        unsubscribed=unsubscribed,
        topics=topics,
        channels=channels,
    )


@router.post("/p/{token}")
async def save_preferences(token: str, request: Request, runtime: RuntimeDep) -> Response:
    payload = _verify(runtime, Purpose.PREFERENCES, token)
    form = await request.form()
    await tracking.save_preferences(
        runtime.engine,
        dispatch_id=payload.dispatch_id,
        now=runtime.clock(),
        checked={key for key, value in form.multi_items() if value == "on"},
        client=_client(request),
    )
    runtime.relay.notify()
    return render("message", title="Preferences saved", message="Your choices are saved.")


# --- surveys ----------------------------------------------------------------------------

_SCALES = {"nps": (0, 10), "csat": (1, 5)}


def _survey(runtime: RuntimeDep, token: str) -> tuple[LinkPayload, str, int]:
    payload = _verify(runtime, Purpose.SURVEY, token)
    kind, score = payload.target or "", payload.score
    low, high = _SCALES.get(kind, (1, 0))
    if score is None or not low <= score <= high:
        raise NotFound("the link is not valid")
    return payload, kind, score


@router.get("/s/{token}")
async def survey_page(token: str, request: Request, runtime: RuntimeDep) -> Response:
    _, kind, score = _survey(runtime, token)
    return render("survey", title="Thank you", score=score, kind=kind, action=request.url.path)


@router.post("/s/{token}")
async def survey_answer(
    token: str,
    request: Request,
    runtime: RuntimeDep,
    comment: Annotated[str, Form(max_length=2_000)] = "",
) -> Response:
    payload, kind, score = _survey(runtime, token)
    extra: dict[str, Any] = {engagement.SURVEY_KIND: kind, engagement.SURVEY_SCORE: score}
    if comment.strip():
        extra[engagement.SURVEY_COMMENT] = comment.strip()
    await _track(
        runtime,
        request,
        payload.dispatch_id,
        engagement.SURVEY_ANSWERED,
        message_id=f"tenure-survey-{payload.dispatch_id}",
        properties=extra,
    )
    return render("message", title="Thank you", message="Your answer is recorded.")
