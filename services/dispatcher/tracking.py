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
``POST /v1/feedback/email``  bounce and complaint reports (admin token)
===========================  =====================================================

Each event goes to ``customer.events`` through the outbox, with the message's
attribution (dispatch, journey, step, run, variant, channel, template).
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.dispatcher import metrics
from services.dispatcher import repository as repo
from services.dispatcher.links import LinkPayload, LinkRefused, Purpose
from services.dispatcher.messages import attribution, engagement_event, outcome_message
from services.dispatcher.models import deliveries, outbox, preferences, subscription_topics
from shared.db.outbox import enqueue
from shared.events import engagement
from shared.events.channels import Channel
from shared.events.dispatch_outcomes import DispatchOutcome, Reason, Status
from shared.http.admin import require_admin
from shared.http.nul_body import NulFree

router = APIRouter(tags=["tracking"])

#: a transparent 1×1 GIF
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
_NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


def _verify(request: Request, purpose: Purpose, token: str) -> LinkPayload:
    try:
        return _runtime(request).signer.verify(purpose, token)  # type: ignore[no-any-return]
    except LinkRefused as exc:
        metrics.LINKS_REFUSED.labels(purpose.value).inc()
        expired = "expired" in exc.reason
        raise HTTPException(410 if expired else 404, detail=exc.reason) from None


async def _delivery(conn: AsyncConnection, dispatch_id: str) -> Any:
    row = (
        await conn.execute(
            select(
                deliveries.c.customer_id,
                deliveries.c.channel,
                deliveries.c.template_id,
                deliveries.c.request,
            ).where(deliveries.c.dispatch_id == dispatch_id)
        )
    ).first()
    if row is None:
        raise HTTPException(404, detail="this message is not known (any more)")
    return row


def _props(row: Any, **more: Any) -> dict[str, Any]:
    return {**attribution(row.request or {}, row.channel, row.template_id), **more}


async def _track(
    request: Request,
    dispatch_id: str,
    event: str,
    *,
    learn_hour: bool = False,
    message_id: str | None = None,
    properties: dict[str, Any] | None = None,
) -> Any:
    """Record an engagement event of the delivery; return the delivery row."""
    runtime = _runtime(request)
    now: datetime = runtime.clock()
    async with runtime.engine.begin() as conn:
        row = await _delivery(conn, dispatch_id)
        if event == engagement.EMAIL_LINK_CLICKED and row.channel not in (None, "email"):
            event = engagement.MESSAGE_CLICKED
        contact = (await repo.load_contacts(conn, ids=[row.customer_id])).get(row.customer_id)
        if contact is not None and contact.erased:
            return row  # an erased customer: nothing is recorded about them any more
        await enqueue(
            session=conn,
            outbox=outbox,
            messages=[
                engagement_event(
                    customer_id=row.customer_id,
                    event=event,
                    properties=_props(row, **(properties or {})),
                    at=now,
                    message_id=message_id,
                    context=_client(request),
                )
            ],
        )
        if learn_hour:
            await repo.add_engagement(conn, customer_id=row.customer_id, hour=now.hour)
    runtime.relay.notify()
    metrics.TRACKED.labels(event).inc()
    return row


def _client(request: Request) -> dict[str, Any]:
    agent = request.headers.get("user-agent")
    return {"userAgent": agent[:512]} if agent else {}


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;"
        "padding:0 1rem}button{font-size:1rem;padding:.5rem 1rem}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status_code,
        headers=_NO_STORE,
    )


# --- opens and clicks ------------------------------------------------------------------


@router.get("/t/o/{token}", include_in_schema=False)
async def open_pixel(token: str, request: Request) -> Response:
    payload = _verify(request, Purpose.OPEN, token)
    await _track(request, payload.dispatch_id, engagement.EMAIL_OPENED, learn_hour=True)
    return Response(PIXEL, media_type="image/gif", headers=_NO_STORE)


@router.get("/t/c/{token}", include_in_schema=False)
async def click(token: str, request: Request) -> Response:
    payload = _verify(request, Purpose.CLICK, token)
    target = payload.target or ""
    if not target.startswith(("https://", "http://")):
        raise HTTPException(404, detail="the link is not valid")
    await _track(
        request,
        payload.dispatch_id,
        engagement.EMAIL_LINK_CLICKED,
        learn_hour=True,
        properties={engagement.URL: target},
    )
    return RedirectResponse(target, status_code=302, headers=_NO_STORE)


@router.api_route("/t/push-opened/{token}", methods=["GET", "POST"], include_in_schema=False)
async def push_opened(token: str, request: Request) -> Response:
    payload = _verify(request, Purpose.PUSH_OPENED, token)
    await _track(request, payload.dispatch_id, engagement.PUSH_OPENED, learn_hour=True)
    return Response(status_code=204, headers=_NO_STORE)


# --- unsubscribe -------------------------------------------------------------------------


@router.get("/t/u/{token}", include_in_schema=False)
async def unsubscribe_page(token: str, request: Request) -> Response:
    _verify(request, Purpose.UNSUBSCRIBE, token)
    return _page(
        "Unsubscribe",
        "<p>Stop receiving these messages?</p>"
        f"<form method='post' action='{html.escape(request.url.path)}'>"
        "<button type='submit'>Unsubscribe</button></form>",
    )


@router.post("/t/u/{token}", include_in_schema=False)
async def unsubscribe(token: str, request: Request) -> Response:
    """One click (RFC 8058: ``List-Unsubscribe=One-Click`` in the body) or the confirm
    page's button: off the message's subscription topic, or off everything when the
    message has none."""
    payload = _verify(request, Purpose.UNSUBSCRIBE, token)
    runtime = _runtime(request)
    now: datetime = runtime.clock()
    async with runtime.engine.begin() as conn:
        row = await _delivery(conn, payload.dispatch_id)
        topic = (row.request or {}).get("subscriptionTopic") or await _template_topic(
            conn, row.template_id
        )
        await _set_preferences(
            conn,
            customer_id=row.customer_id,
            now=now,
            unsubscribed=None if topic else True,
            topics={topic: False} if topic else None,
        )
        props = _props(row, **({"topic": topic} if topic else {"all": True}))
        await enqueue(
            session=conn,
            outbox=outbox,
            messages=[
                engagement_event(
                    customer_id=row.customer_id,
                    event=engagement.UNSUBSCRIBED,
                    properties=props,
                    at=now,
                    message_id=f"tenure-unsubscribe-{payload.dispatch_id}",
                    context=_client(request),
                )
            ],
        )
    runtime.relay.notify()
    metrics.TRACKED.labels(engagement.UNSUBSCRIBED).inc()
    what = f"from “{html.escape(topic)}”" if topic else "from every message"
    return _page("Unsubscribed", f"<p>You are unsubscribed {what}.</p>")


async def _template_topic(conn: AsyncConnection, template_id: str) -> str | None:
    heads = await repo.template_heads(conn, ids=[template_id])
    head = heads.get(template_id)
    if head is None:
        return None
    found = await repo.template_definitions(conn, keys=[(template_id, head.latest_version)])
    definition = found.get((template_id, head.latest_version))
    return definition.subscription_topic if definition else None


async def _set_preferences(
    conn: AsyncConnection,
    *,
    customer_id: str,
    now: datetime,
    unsubscribed: bool | None = None,
    channels: dict[str, bool] | None = None,
    topics: dict[str, bool] | None = None,
) -> None:
    """Merge choices into the customer's preferences (``None``: unchanged)."""
    values = {
        "customer_id": customer_id,
        "unsubscribed": bool(unsubscribed),
        "channels": channels or {},
        "topics": topics or {},
        "updated_at": now,
    }
    statement = insert(preferences).values(values)
    excluded = statement.excluded
    sets: dict[str, Any] = {"updated_at": now}
    if unsubscribed is not None:
        sets["unsubscribed"] = excluded.unsubscribed
    if channels:
        sets["channels"] = preferences.c.channels.op("||")(excluded.channels)
    if topics:
        sets["topics"] = preferences.c.topics.op("||")(excluded.topics)
    await conn.execute(statement.on_conflict_do_update(index_elements=["customer_id"], set_=sets))


# --- preference page ---------------------------------------------------------------------


@router.get("/t/p/{token}", include_in_schema=False)
async def preferences_page(token: str, request: Request) -> Response:
    payload = _verify(request, Purpose.PREFERENCES, token)
    runtime = _runtime(request)
    async with runtime.engine.connect() as conn:
        row = await _delivery(conn, payload.dispatch_id)
        prefs = (await repo.load_preferences(conn, ids=[row.customer_id])).get(row.customer_id)
        topics = (
            await conn.execute(
                select(
                    subscription_topics.c.topic,
                    subscription_topics.c.name,
                    subscription_topics.c.default_subscribed,
                ).order_by(subscription_topics.c.topic)
            )
        ).all()
    prefs = prefs or repo.preferences_row(None)
    boxes = [
        _box("unsubscribed", "Unsubscribe from everything", prefs.unsubscribed),
        "<h2>Topics</h2>",
        *(
            _box(f"topic:{t.topic}", t.name, prefs.topics.get(t.topic, t.default_subscribed))
            for t in topics
        ),
        "<h2>Channels</h2>",
        *(_box(f"channel:{c.value}", c.value.title(), prefs.allows(c)) for c in Channel),
    ]
    return _page(
        "Your preferences",
        f"<form method='post' action='{html.escape(request.url.path)}'>"
        + "".join(boxes)
        + "<p><button type='submit'>Save</button></p></form>",
    )


def _box(name: str, label: str, checked: bool) -> str:
    mark = " checked" if checked else ""
    return (
        f"<p><label><input type='checkbox' name='{html.escape(name)}' value='on'{mark}> "
        f"{html.escape(label)}</label></p>"
    )


@router.post("/t/p/{token}", include_in_schema=False)
async def save_preferences(token: str, request: Request) -> Response:
    payload = _verify(request, Purpose.PREFERENCES, token)
    form = await request.form()
    checked = {key for key, value in form.multi_items() if value == "on"}
    runtime = _runtime(request)
    now: datetime = runtime.clock()
    async with runtime.engine.begin() as conn:
        row = await _delivery(conn, payload.dispatch_id)
        known = (await conn.execute(select(subscription_topics.c.topic))).scalars().all()
        topics = {topic: f"topic:{topic}" in checked for topic in known}
        channels = {c.value: f"channel:{c.value}" in checked for c in Channel}
        unsubscribed = "unsubscribed" in checked
        await _set_preferences(
            conn,
            customer_id=row.customer_id,
            now=now,
            unsubscribed=unsubscribed,
            channels=channels,
            topics=topics,
        )
        if unsubscribed:
            await enqueue(
                session=conn,
                outbox=outbox,
                messages=[
                    engagement_event(
                        customer_id=row.customer_id,
                        event=engagement.UNSUBSCRIBED,
                        properties=_props(row, all=True),
                        at=now,
                        context=_client(request),
                    )
                ],
            )
    runtime.relay.notify()
    return _page("Preferences saved", "<p>Your choices are saved.</p>")


# --- surveys ----------------------------------------------------------------------------

_SCALES = {"nps": (0, 10), "csat": (1, 5)}


def _survey(request: Request, token: str) -> tuple[LinkPayload, str, int]:
    payload = _verify(request, Purpose.SURVEY, token)
    kind, score = payload.target or "", payload.score
    low, high = _SCALES.get(kind, (1, 0))
    if score is None or not low <= score <= high:
        raise HTTPException(404, detail="the link is not valid")
    return payload, kind, score


@router.get("/t/s/{token}", include_in_schema=False)
async def survey_page(token: str, request: Request) -> Response:
    _, kind, score = _survey(request, token)
    return _page(
        "Thank you",
        f"<p>Your answer: <strong>{score}</strong> ({kind.upper()}).</p>"
        f"<form method='post' action='{html.escape(request.url.path)}'>"
        "<p><label>Anything to add? (optional)<br>"
        "<textarea name='comment' rows='4' cols='40' maxlength='2000'></textarea></label></p>"
        "<button type='submit'>Send my answer</button></form>",
    )


@router.post("/t/s/{token}", include_in_schema=False)
async def survey_answer(
    token: str,
    request: Request,
    comment: Annotated[str, Form(max_length=2_000)] = "",
) -> Response:
    payload, kind, score = _survey(request, token)
    extra: dict[str, Any] = {engagement.SURVEY_KIND: kind, engagement.SURVEY_SCORE: score}
    if comment.strip():
        extra[engagement.SURVEY_COMMENT] = comment.strip()
    await _track(
        request,
        payload.dispatch_id,
        engagement.SURVEY_ANSWERED,
        message_id=f"tenure-survey-{payload.dispatch_id}",
        properties=extra,
    )
    return _page("Thank you", "<p>Your answer is recorded.</p>")


# --- bounces and complaints ---------------------------------------------------------------


class EmailFeedback(NulFree):
    """A bounce or complaint, as an email provider's webhook (or a relay of it) reports
    it: the ``X-Tenure-Dispatch-Id`` header of the message, or its ``Message-ID``."""

    dispatch_id: str | None = Field(default=None, max_length=256)
    message_id: str | None = Field(default=None, max_length=512)
    kind: Literal["bounce", "complaint"]
    bounce_type: Literal["hard", "soft"] = "hard"
    detail: str | None = Field(default=None, max_length=1_000)


class Problem(BaseModel):
    """What a 404 answers."""

    detail: str


@router.post(
    "/v1/feedback/email",
    status_code=202,
    dependencies=[Depends(require_admin)],
    responses={404: {"description": "no delivery has that id (any more)", "model": Problem}},
)
async def email_feedback(body: EmailFeedback, request: Request) -> dict[str, str]:
    """A hard bounce turns the customer's email channel off; a complaint unsubscribes
    them; both give an event (``Email Bounced`` / ``Email Marked as Spam``), and a
    bounce an outcome ``bounced``."""
    dispatch_id = body.dispatch_id or _dispatch_of(body.message_id)
    if not dispatch_id:
        raise RequestValidationError(
            [
                {
                    "type": "missing",
                    "loc": ("body", "dispatch_id"),
                    "msg": "give dispatch_id or message_id",
                    "input": body.model_dump(),
                }
            ]
        )
    runtime = _runtime(request)
    now: datetime = runtime.clock()
    async with runtime.engine.begin() as conn:
        row = await _delivery(conn, dispatch_id)
        stored = row.request or {}
        messages = []
        if body.kind == "bounce":
            reason = Reason.HARD_BOUNCE if body.bounce_type == "hard" else Reason.SOFT_BOUNCE
            result = DispatchOutcome(
                outcome_id=f"{dispatch_id}:bounced",
                dispatch_id=dispatch_id,
                customer_id=row.customer_id,
                status=Status.BOUNCED,
                reason=f"{reason}: {body.detail}" if body.detail else reason,
                channel=Channel.EMAIL,
                at=now,
                template_id=row.template_id,
                journey_id=stored.get("journeyId"),
                journey_version=stored.get("journeyVersion"),
                step_id=stored.get("stepId"),
                run_id=stored.get("runId"),
                variant=stored.get("variant"),
            )
            await repo.insert_outcomes(conn, rows=[result])
            messages.append(outcome_message(result))
            event = engagement.EMAIL_BOUNCED
            if body.bounce_type == "hard":
                await _set_preferences(
                    conn, customer_id=row.customer_id, now=now, channels={"email": False}
                )
        else:
            event = engagement.EMAIL_MARKED_AS_SPAM
            await _set_preferences(conn, customer_id=row.customer_id, now=now, unsubscribed=True)
        messages.append(
            engagement_event(
                customer_id=row.customer_id,
                event=event,
                properties=_props(
                    row,
                    **({"bounceType": body.bounce_type} if body.kind == "bounce" else {}),
                ),
                at=now,
                message_id=f"tenure-{body.kind}-{dispatch_id}",
            )
        )
        await enqueue(session=conn, outbox=outbox, messages=messages)
    runtime.relay.notify()
    metrics.TRACKED.labels(event).inc()
    return {"status": "recorded", "dispatch_id": dispatch_id}


def _dispatch_of(message_id: str | None) -> str | None:
    if not message_id:
        return None
    return message_id.strip().strip("<>").split("@", 1)[0] or None
