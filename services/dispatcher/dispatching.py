"""From a dispatch request to a message handed to a provider, each step recorded.

A request goes through three transactions at most:

1. **decide** (one transaction per batch): the delivery row is inserted under its
   ``dispatch_id`` (a request already held is dropped: a redelivery sends nothing);
   the checks of :mod:`services.dispatcher.policy` run against the customer's
   contact, preferences and recent sends; the template is rendered. A message to
   send is marked ``sending`` with ``sent_at`` (the caps count it from then on);
   a deferral gets a durable timer; suppressions and failures their outcome. The
   customers' advisory locks are held, so a deferral firing elsewhere and a new
   request of the same customer never both pass a cap.
2. **send**, outside any transaction, concurrently (bounded), each call retried on
   transient errors with exponential backoff and jitter.
3. **record**: ``sent`` or ``failed`` (with a dead letter), and the outcome.

The consumer commits its offsets once step 1 is durable and decides its next batch
while this one is sent (:meth:`Dispatcher.handle_requests` without ``wait``): the
delivery rows, not the offsets, are what keep a redelivery from sending twice. A
process killed between 1 and 3
leaves ``sending`` rows: a redelivered request finds its row and sends nothing; the
:meth:`Dispatcher.expire_interrupted` job gives those rows, once their lease is
over, a ``failed`` outcome (``interrupted``): whether the provider got the message
is unknown, and sending again could send it twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.dispatcher import metrics
from services.dispatcher import repository as repo
from services.dispatcher.channels.base import (
    Outgoing,
    PermanentProviderError,
    Provider,
    ProviderError,
    TransientProviderError,
)
from services.dispatcher.contacts import Contact
from services.dispatcher.links import LinkSigner
from services.dispatcher.messages import dead_letter, outcome, outcome_message
from services.dispatcher.models import deferrals, outbox
from services.dispatcher.offers.issue import coupon_issued_messages, draw_for
from services.dispatcher.offers.template import OfferFunctions
from services.dispatcher.policy import (
    Action,
    Decision,
    Preferences,
    Sent,
    Situation,
    decide,
    not_before,
)
from services.dispatcher.repository import DeliveryUpdate, HeldRequest
from services.dispatcher.templates import (
    TemplateDefinition,
    TemplateError,
    link_hosts,
    render_variant,
    rewrite_links,
)
from shared.db.locks import lock_name, xact_locks
from shared.db.outbox import enqueue
from shared.db.timers import claim_due, schedule
from shared.db.transient import is_transient_db_error
from shared.events.channels import Channel
from shared.events.dispatch_outcomes import DispatchOutcome, Reason, Status
from shared.events.dispatch_requests import DispatchRequest
from shared.kafka.producer import Message
from shared.retry import retrying

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    first_s: float = 0.2
    max_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message decided and rendered, to hand to its provider."""

    request: DispatchRequest
    outgoing: Outgoing
    template_version: int


@dataclass(slots=True)
class _Effects:
    """What one decision transaction writes."""

    updates: list[DeliveryUpdate] = field(default_factory=list)
    outcomes: list[DispatchOutcome] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    timers: list[tuple[str, datetime]] = field(default_factory=list)
    claimed: list[Claimed] = field(default_factory=list)

    def conclude(self, request: DispatchRequest, result: DispatchOutcome) -> None:
        self.outcomes.append(result)
        self.messages.append(outcome_message(result))
        metrics.OUTCOMES.labels(result.status.value, _reason_label(result.reason)).inc()


def _reason_label(reason: str | None) -> str:
    """The reason's known head (a bounded label set), ``other`` for free text."""
    if reason is None:
        return ""
    head = reason.split(":", 1)[0]
    return head if head in Reason.__members__.values() else "other"


class Dispatcher:
    """Decides, sends and records; see the module docstring."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        providers: Mapping[Channel, Provider],
        signer: LinkSigner,
        clock: Clock = utc_now,
        on_commit: Callable[[], None] = lambda: None,
        send_concurrency: int = 256,
        retry: RetryPolicy = RetryPolicy(),
        webhook_default: str | None = None,
        stopping: asyncio.Event | None = None,
        batches_sending: int = 2,
        offer_keys: Mapping[int, bytes] | None = None,
        offer_key_id: int = 0,
    ) -> None:
        self._engine = engine
        self._providers = dict(providers)
        self._signer = signer
        self._clock = clock
        self._on_commit = on_commit
        self._slots = asyncio.Semaphore(send_concurrency)
        self._retry = retry
        self._webhook_default = webhook_default
        self._stopping = stopping
        self._batches_sending = max(1, batches_sending)
        self._sending: set[asyncio.Task[None]] = set()
        self._closing = False
        self._offer_keys = dict(offer_keys or {})
        self._offer_key_id = offer_key_id
        #: template versions never change once written: kept by (id, version)
        self._definitions: dict[tuple[str, int], TemplateDefinition] = {}

    @property
    def channels(self) -> frozenset[Channel]:
        """The channels a provider is configured for."""
        return frozenset(self._providers)

    # --- the three steps -----------------------------------------------------------

    async def handle_requests(
        self, requests: Sequence[DispatchRequest], *, wait: bool = True
    ) -> None:
        """A batch of requests: decide, send, record. With ``wait`` it returns once all
        is recorded; without, once the decisions are durable, the sends going on in the
        background (at most ``batches_sending`` batches at once; the call waits for a
        slot). Either way a redelivered request finds its delivery row: the consumer
        may commit its offsets as soon as this returns."""
        if not requests:
            return
        now = self._clock()
        async with self._engine.begin() as conn:
            fresh = await repo.claim_new(conn, requests=requests, now=now)
            metrics.REQUESTS_DUPLICATE.inc(len(requests) - len(fresh))
            claimed = await self._decide(conn, [HeldRequest(r, None) for r in fresh], now, True)
        self._on_commit()
        while not wait and len(self._sending) >= self._batches_sending:
            await asyncio.wait(self._sending, return_when=asyncio.FIRST_COMPLETED)
        if wait or self._closing:  # once shutdown began, nothing new in the background
            await self.deliver(claimed)
            return
        task = asyncio.create_task(self.deliver(claimed), name="dispatcher-sends")
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # the deliveries stay ``sending``: expire_interrupted gives them an outcome
            log.error("recording a batch of sends failed", exc_info=task.exception())

    async def drain(self) -> None:
        """From now on send in the foreground; wait for the batches still being sent
        and recorded."""
        self._closing = True
        while self._sending:
            await asyncio.wait(set(self._sending))

    async def fire_due(self, *, limit: int) -> int:
        """One round of the deferral sweep: claim up to ``limit`` due timers, decide
        their requests again, send, record. Returns how many timers fired."""
        now = self._clock()
        async with self._engine.begin() as conn:
            rows = await claim_due(conn, table=deferrals, now=now, limit=limit)
            if not rows:
                return 0
            held = await repo.deferred_requests(conn, dispatch_ids=[r.dispatch_id for r in rows])
            claimed = await self._decide(conn, held, now, False)
        self._on_commit()
        await self.deliver(claimed)
        return len(rows)

    async def _decide(
        self, conn: AsyncConnection, held: Sequence[HeldRequest], now: datetime, first: bool
    ) -> list[Claimed]:
        if not held:
            return []
        customers = sorted({h.request.customer_id for h in held})
        await xact_locks(conn, (lock_name("dispatcher", "customer", item=c) for c in customers))
        policy = await repo.load_policy(conn)
        contacts = await repo.load_contacts(conn, ids=customers)
        prefs = await repo.load_preferences(conn, ids=customers)
        topics = await repo.topic_defaults(conn)
        recent = await repo.recent_sends(
            conn, ids=customers, since=now - max(policy.longest_window, timedelta(0))
        )
        needs_engagement = [
            h.request.customer_id
            for h in held
            if h.not_before is None and h.request.send_time.kind == "best_time"
        ]
        engagement = await repo.load_engagement(conn, ids=needs_engagement)
        definitions = await self._templates(conn, held)

        effects = _Effects()
        decided: list[Any] = []
        # the customer's most urgent first, where a cap leaves room for fewer than wait
        ordered = sorted(
            held,
            key=lambda h: (
                h.request.customer_id,
                -h.request.priority.rank,
                h.request.requested_at,
            ),
        )
        for item in ordered:
            request = item.request
            contact = contacts.get(request.customer_id)
            found = definitions.get(request.dispatch_id)
            if isinstance(found, str):
                self._fail(effects, request, now, f"{Reason.TEMPLATE_ERROR}: {found}")
                continue
            version, definition = found  # type: ignore[misc]
            when = item.not_before
            if when is None:
                when = not_before(request, contact, policy, engagement.get(request.customer_id, {}))
            situation = Situation(
                contact=contact,
                preferences=prefs.get(request.customer_id, Preferences()),
                recent=recent.get(request.customer_id, ()),
                template_channels=frozenset(definition.channels() & self.channels),
                topic=request.subscription_topic or definition.subscription_topic,
                topic_defaults=topics,
                not_before=when,
                webhook_default=self._webhook_default,
            )
            decision = decide(request, situation, policy, now)
            decided.append((item, decision, when, version, definition, contact))
            if decision.action is Action.SEND and decision.channel is not None:
                recent.setdefault(request.customer_id, []).append(Sent(decision.channel, now))
        # codes of the coupon pools the messages being sent draw from, keyed by dispatch
        drawn = await draw_for(conn, decided, now=now)

        def apply_all() -> None:
            for item, decision, when, version, definition, contact in decided:
                self._apply(effects, item, decision, when, version, definition, contact, now, drawn)

        # templates render in a worker thread: the event loop (health, tracking pages, the
        # consumer) never waits for one (issue 21); each render is bounded by the sandbox
        await asyncio.to_thread(apply_all)
        await repo.update_deliveries(conn, updates=effects.updates, now=now)
        await repo.insert_outcomes(conn, rows=effects.outcomes)
        await schedule(conn, table=deferrals, rows=effects.timers)
        await enqueue(session=conn, outbox=outbox, messages=effects.messages)
        return effects.claimed

    def _apply(
        self,
        effects: _Effects,
        item: HeldRequest,
        decision: Decision,
        when: datetime,
        version: int,
        definition: TemplateDefinition,
        contact: Contact | None,
        now: datetime,
        drawn: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        request = item.request
        channel = decision.channel.value if decision.channel else None
        if decision.action is Action.DEFER:
            assert decision.until is not None
            effects.updates.append(
                DeliveryUpdate(
                    request.dispatch_id,
                    "deferred",
                    channel=channel,
                    template_version=version,
                    reason=decision.reason,
                    not_before=when,
                    deferred_until=decision.until,
                )
            )
            effects.timers.append((request.dispatch_id, decision.until))
            effects.conclude(
                request,
                outcome(
                    request,
                    Status.DEFERRED,
                    now,
                    channel=decision.channel,
                    reason=decision.reason,
                    deferred_until=decision.until,
                    template_version=version,
                ),
            )
            return
        if decision.action is Action.SUPPRESS:
            effects.updates.append(
                DeliveryUpdate(
                    request.dispatch_id,
                    "suppressed",
                    channel=channel,
                    template_version=version,
                    reason=decision.reason,
                    not_before=when,
                )
            )
            effects.conclude(
                request,
                outcome(
                    request,
                    Status.SUPPRESSED,
                    now,
                    channel=decision.channel,
                    reason=decision.reason,
                    template_version=version,
                ),
            )
            return
        if decision.action is Action.FAIL:
            self._fail(effects, request, now, decision.reason or Reason.TEMPLATE_ERROR, version)
            return
        assert decision.channel is not None and decision.address is not None
        offers = self.offers_for(request, drawn or {}, now)
        try:
            outgoing = self.compose(request, decision, definition, contact, offers)
        except TemplateError as exc:
            self._fail(effects, request, now, f"{Reason.TEMPLATE_ERROR}: {exc}", version)
            return
        effects.messages.extend(coupon_issued_messages(request, decision, offers, now))
        effects.updates.append(
            DeliveryUpdate(
                request.dispatch_id,
                "sending",
                channel=channel,
                template_version=version,
                not_before=when,
                sent_at=now,
            )
        )
        effects.claimed.append(Claimed(request, outgoing, version))

    def _fail(
        self,
        effects: _Effects,
        request: DispatchRequest,
        now: datetime,
        reason: str,
        version: int | None = None,
    ) -> None:
        effects.updates.append(
            DeliveryUpdate(request.dispatch_id, "failed", template_version=version, reason=reason)
        )
        effects.conclude(
            request, outcome(request, Status.FAILED, now, reason=reason, template_version=version)
        )
        effects.messages.append(dead_letter(request, reason))
        metrics.DEAD_LETTERS.inc()

    async def _templates(
        self, conn: AsyncConnection, held: Sequence[HeldRequest]
    ) -> dict[str, tuple[int, TemplateDefinition] | str]:
        """Each request's template version (pinned by the request, else decided on
        arrival, else the latest) and definition, or why there is none."""
        heads = await repo.template_heads(conn, ids={h.request.template_id for h in held})
        wanted: dict[str, tuple[str, int]] = {}
        found: dict[str, tuple[int, TemplateDefinition] | str] = {}
        for item in held:
            request = item.request
            pinned = request.template_version or item.template_version
            head = heads.get(request.template_id)
            if head is None:
                found[request.dispatch_id] = f"no template {request.template_id!r}"
            elif pinned is None and head.archived:
                found[request.dispatch_id] = f"the template {request.template_id!r} is archived"
            else:
                wanted[request.dispatch_id] = (
                    request.template_id,
                    pinned or head.latest_version,
                )
        missing = {key for key in wanted.values() if key not in self._definitions}
        self._definitions.update(await repo.template_definitions(conn, keys=missing))
        for dispatch_id, key in wanted.items():
            definition = self._definitions.get(key)
            found[dispatch_id] = (
                (key[1], definition)
                if definition is not None
                else f"no version {key[1]} of template {key[0]!r}"
            )
        return found

    def compose(
        self,
        request: DispatchRequest,
        decision: Decision,
        definition: TemplateDefinition,
        contact: Contact | None,
        offers: OfferFunctions | None = None,
    ) -> Outgoing:
        """The message rendered for the customer, its links signed; :class:`TemplateError`
        when the template does not render (an offer it cannot have included)."""
        assert decision.channel is not None and decision.address is not None
        channel = decision.channel
        dispatch_id = request.dispatch_id
        variant = definition.variant(channel, contact.locale if contact else None)
        if variant is None:  # decide() only picks channels the template has
            raise TemplateError(f"no {channel} variant")
        signer = self._signer
        unsubscribe = signer.unsubscribe(dispatch_id)
        context: dict[str, Any] = {
            "customer": (contact or Contact(request.customer_id)).template_context(),
            "context": request.context,
            "message": {
                "dispatch_id": dispatch_id,
                "channel": channel.value,
                "journey_id": request.journey_id,
                "step_id": request.step_id,
                "variant": request.variant,
            },
            "unsubscribe_url": unsubscribe,
            "preferences_url": _Lazy(lambda: signer.preferences(dispatch_id)),
            "link": lambda url: signer.click(dispatch_id, str(url)),
            "survey_url": lambda kind, score: signer.survey(dispatch_id, str(kind), int(score)),
        }
        if offers is None:
            offers = self.offers_for(request, {}, self._clock())
        context.update(offers.context())
        rendered = render_variant(variant, context)
        if channel is Channel.EMAIL and rendered.html is not None:
            html = rewrite_links(
                rendered.html,
                lambda url: url if signer.is_own(url) else signer.click(dispatch_id, url),
                hosts=link_hosts(variant),  # no signed redirect to a host from data
            )
            pixel = (
                f'<img src="{signer.open_pixel(dispatch_id)}" width="1" height="1" alt="" '
                'style="display:none">'
            )
            at = html.lower().rfind("</body>")
            html = html[:at] + pixel + html[at:] if at >= 0 else html + pixel
            rendered = _replace(rendered, html=html)
        return Outgoing(
            dispatch_id=dispatch_id,
            customer_id=request.customer_id,
            channel=channel,
            address=decision.address,
            rendered=rendered,
            template_id=request.template_id,
            unsubscribe_url=unsubscribe,
            opened_url=signer.push_opened(dispatch_id) if channel is Channel.PUSH else None,
            attributes={
                "journeyId": request.journey_id,
                "stepId": request.step_id,
                "runId": request.run_id,
                "variant": request.variant,
                "context": request.context,
            },
        )

    def offers_for(
        self, request: DispatchRequest, drawn: Mapping[tuple[str, str], str], now: datetime
    ) -> OfferFunctions:
        """``coupon()`` and ``offer_code()`` for one dispatch's rendering."""
        return OfferFunctions(
            dispatch_id=request.dispatch_id,
            today=now.date(),
            drawn={pool: code for (pool, d), code in drawn.items() if d == request.dispatch_id},
            keys=self._offer_keys,
            key_id=self._offer_key_id,
        )

    # --- sending and recording ---------------------------------------------------------

    async def deliver(self, claimed: Sequence[Claimed]) -> None:
        """Send every claimed message concurrently, then record every result in one
        transaction."""
        if not claimed:
            return
        results = await asyncio.gather(*(self._send(c) for c in claimed))
        now = self._clock()
        updates: list[DeliveryUpdate] = []
        rows: list[DispatchOutcome] = []
        messages: list[Message] = []
        for item, (provider_id, error, attempts) in zip(claimed, results, strict=True):
            request, channel = item.request, item.outgoing.channel
            if error is None:
                if request.send_time.kind == "now":
                    waited = (now - request.requested_at).total_seconds()
                    metrics.REQUEST_TO_HANDOFF_SECONDS.observe(max(0.0, waited))
                updates.append(
                    DeliveryUpdate(
                        request.dispatch_id,
                        "sent",
                        provider_message_id=provider_id,
                        attempts=attempts,
                    )
                )
                result = outcome(
                    request,
                    Status.SENT,
                    now,
                    channel=channel,
                    provider_message_id=provider_id,
                    template_version=item.template_version,
                )
            else:
                updates.append(
                    DeliveryUpdate(request.dispatch_id, "failed", reason=error, attempts=attempts)
                )
                result = outcome(
                    request,
                    Status.FAILED,
                    now,
                    channel=channel,
                    reason=error,
                    template_version=item.template_version,
                )
                messages.append(dead_letter(request, error))
                metrics.DEAD_LETTERS.inc()
            rows.append(result)
            messages.append(outcome_message(result))
            metrics.OUTCOMES.labels(result.status.value, _reason_label(result.reason)).inc()

        async def record() -> None:
            async with self._engine.begin() as conn:
                await repo.update_deliveries(conn, updates=updates, now=now)
                await repo.insert_outcomes(conn, rows=rows)
                await enqueue(session=conn, outbox=outbox, messages=messages)

        # The messages are out: keep trying to record them (a redelivered request
        # would not send them again, and left unrecorded they would end "interrupted").
        await retrying(
            what="recording sends", retry_on=is_transient_db_error, stopping=self._stopping
        )(record)
        self._on_commit()

    async def _send(self, item: Claimed) -> tuple[str | None, str | None, int]:
        """(provider message id, None, attempts) or (None, failure reason, attempts)."""
        outgoing = item.outgoing
        provider = self._providers[outgoing.channel]
        attempts = 0

        async def attempt() -> str:
            nonlocal attempts
            attempts += 1
            async with self._slots:
                with metrics.SEND_SECONDS.labels(outgoing.channel.value).time():
                    return await provider.send(outgoing)

        retry = self._retry
        try:
            provider_id: str = await retrying(
                what=f"sending {outgoing.dispatch_id} by {outgoing.channel}",
                retry_on=lambda exc: isinstance(exc, TransientProviderError),
                first_s=retry.first_s,
                max_s=retry.max_s,
                attempts=retry.attempts,
                stopping=self._stopping,
                logger=log,
            )(attempt)
        except PermanentProviderError as exc:
            metrics.PROVIDER_ERRORS.labels(outgoing.channel.value, "permanent").inc()
            return None, f"{Reason.PROVIDER_ERROR}: {exc.reason}", attempts
        except ProviderError as exc:
            metrics.PROVIDER_ERRORS.labels(outgoing.channel.value, "transient").inc()
            return None, f"{Reason.RETRIES_EXHAUSTED}: {exc.reason}", attempts
        except Exception as exc:  # a provider bug must not lose the batch's records
            log.exception("provider %s failed unexpectedly", outgoing.channel)
            return None, f"{Reason.PROVIDER_ERROR}: {type(exc).__name__}: {exc}", attempts
        metrics.SENT.labels(outgoing.channel.value).inc()
        return provider_id, None, attempts

    # --- crash recovery -------------------------------------------------------------

    async def expire_interrupted(self, *, lease_s: float) -> int:
        """Give deliveries left ``sending`` by a process that died a ``failed`` outcome
        (``interrupted``); never send them again. Returns how many."""
        now = self._clock()
        async with self._engine.begin() as conn:
            stale = await repo.stale_sending(conn, older_than=now - timedelta(seconds=lease_s))
            effects = _Effects()
            for dispatch_id, raw in stale:
                request = DispatchRequest.model_validate(orjson.loads(raw))
                reason = (
                    f"{Reason.PROVIDER_ERROR}: interrupted; the provider may or may not "
                    "have the message, so it is not sent again"
                )
                effects.updates.append(DeliveryUpdate(dispatch_id, "failed", reason=reason))
                effects.conclude(request, outcome(request, Status.FAILED, now, reason=reason))
            await repo.update_deliveries(conn, updates=effects.updates, now=now)
            await repo.insert_outcomes(conn, rows=effects.outcomes)
            await enqueue(session=conn, outbox=outbox, messages=effects.messages)
        if stale:
            self._on_commit()
        return len(stale)


class _Lazy:
    """A link signed only if the template uses it (signing costs tens of µs)."""

    __slots__ = ("_make", "_value")

    def __init__(self, make: Callable[[], str]) -> None:
        self._make = make
        self._value: str | None = None

    def __str__(self) -> str:
        if self._value is None:
            self._value = self._make()
        return self._value

    def __html__(self) -> str:
        import html

        return html.escape(str(self))


class SendsInFlight:
    """A runtime loop that, on shutdown, waits for the batches still being sent (after
    the consumer stopped, before the outbox's last relay)."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        await self._stopping.wait()
        await self._dispatcher.drain()

    def signal_shutdown(self) -> None:
        self._dispatcher._closing = True
        self._stopping.set()


def _replace(rendered: Any, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(rendered, **changes)
