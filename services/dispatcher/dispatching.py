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
3. **record**: ``sent`` or ``failed`` (with a dead letter), and the outcome, as soon
   as the send finished, in one transaction with the other sends that finished
   meanwhile (:mod:`services.dispatcher.recording`); only a delivery still
   ``sending`` is recorded (one that outlived its lease was given an ``interrupted``
   failure meanwhile, and keeps that one outcome).

A request already held (a redelivery, or the journey re-requesting a dispatch whose
outcome never reached it) sends nothing; if its delivery has a final outcome, that
outcome is published again (same ``outcome_id``: consumers keep one).

A request whose customer's profile copy has not folded its trigger yet waits
(:func:`services.dispatcher.plan.waits_for_profile`): a ``profile_behind`` deferral,
fired by the deferral sweep, and brought forward as soon as a ``profiles`` message
advances that customer's copy (:meth:`Dispatcher.profiles_advanced`).

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
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.dispatcher import metrics
from services.dispatcher import repository as repo
from services.dispatcher.channels.base import (
    PermanentProviderError,
    Provider,
    ProviderError,
    TransientProviderError,
)
from services.dispatcher.compose import Composer
from services.dispatcher.messages import outcome, outcome_message
from services.dispatcher.models import deferrals, outbox, profiles
from services.dispatcher.offers.issue import draw_for
from services.dispatcher.plan import (
    Claimed,
    Facts,
    Plan,
    Template,
    judge,
    plan,
    pools_wanted,
    waits_for_profile,
)
from services.dispatcher.policy import Action, Preferences, Sent
from services.dispatcher.recording import SendRecorder, SendResult
from services.dispatcher.repository import DeliveryUpdate, HeldRequest
from services.dispatcher.templates import TemplateDefinition
from shared.clock import Clock, utc_now
from shared.db.locks import lock_name, xact_locks
from shared.db.outbox import enqueue
from shared.db.profile_projection import load_folded
from shared.db.timers import claim_due, schedule
from shared.events.channels import Channel
from shared.events.dispatch_outcomes import DispatchOutcome, Reason, Status
from shared.events.dispatch_requests import DispatchRequest
from shared.kafka.producer import Message
from shared.retry import retrying

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    first_s: float = 0.2
    max_s: float = 5.0


@dataclass(slots=True)
class _Effects:
    """What one decision transaction writes."""

    updates: list[DeliveryUpdate] = field(default_factory=list)
    outcomes: list[DispatchOutcome] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    timers: list[tuple[str, datetime]] = field(default_factory=list)
    claimed: list[Claimed] = field(default_factory=list)

    def conclude(self, result: DispatchOutcome) -> None:
        self.outcomes.append(result)
        self.messages.append(outcome_message(result))
        count_outcome(result)

    def add(self, planned: Plan) -> None:
        self.updates.append(planned.update)
        self.messages.extend(planned.messages)
        if planned.outcome is not None:
            self.outcomes.append(planned.outcome)
            count_outcome(planned.outcome)
        if planned.timer is not None:
            self.timers.append((planned.update.dispatch_id, planned.timer))
        if planned.send is not None:
            self.claimed.append(planned.send)
        if planned.action is Action.FAIL:
            metrics.DEAD_LETTERS.inc()


def count_outcome(result: DispatchOutcome) -> None:
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
        composer: Composer,
        clock: Clock = utc_now,
        on_commit: Callable[[], None] = lambda: None,
        send_concurrency: int = 256,
        retry: RetryPolicy = RetryPolicy(),
        webhook_default: str | None = None,
        stopping: asyncio.Event | None = None,
        batches_sending: int = 2,
        profile_wait: timedelta = timedelta(minutes=10),
        record_linger_s: float = 0.02,
    ) -> None:
        self._engine = engine
        self._providers = dict(providers)
        self.composer = composer
        self._clock = clock
        self._on_commit = on_commit
        self._slots = asyncio.Semaphore(send_concurrency)
        self._retry = retry
        self._webhook_default = webhook_default
        self._stopping = stopping
        self._batches_sending = max(1, batches_sending)
        self._profile_wait = profile_wait
        self._sending: set[asyncio.Task[None]] = set()
        self._recorder = SendRecorder(
            engine=engine,
            clock=clock,
            on_commit=on_commit,
            stopping=stopping,
            linger_s=record_linger_s,
        )
        self._closing = False
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
            if len(fresh) < len(requests):
                await self._republish_final(conn, requests, {r.dispatch_id for r in fresh})
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

    async def _republish_final(
        self, conn: AsyncConnection, requests: Sequence[DispatchRequest], fresh: set[str]
    ) -> None:
        """Publish again the final outcome of each request already held that has one
        (the journey re-requests a dispatch whose outcome it never got: the outcome may
        be what the broker lost); one still deferred or being sent gets nothing here."""
        held = {r.dispatch_id: r for r in requests if r.dispatch_id not in fresh}
        finals = await repo.final_outcomes(conn, dispatch_ids=list(held))
        messages = [
            outcome_message(
                outcome(
                    held[row.dispatch_id],
                    row.status,
                    row.at,
                    channel=row.channel,
                    reason=row.reason,
                    provider_message_id=row.provider_message_id,
                    template_version=row.template_version,
                )
            )
            for row in finals
        ]
        await enqueue(session=conn, outbox=outbox, messages=messages)
        metrics.OUTCOMES_REPUBLISHED.inc(len(messages))

    async def profiles_advanced(
        self, conn: AsyncConnection, *, customer_ids: Sequence[str]
    ) -> None:
        """The profile copies of these customers just advanced: their requests waiting
        for them (``profile_behind``) are due now, in the caller's transaction."""
        await repo.wake_profile_waits(conn, customer_ids=customer_ids, now=self._clock())

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

    async def erase(self, conn: AsyncConnection, *, customer_ids: Sequence[str]) -> None:
        """Customers erased (their profile tombstones written in this transaction):
        their pending and deferred deliveries end ``suppressed`` (``erased``), each with
        its outcome, then what is held about them is scrubbed (:func:`repo.erase_customers`)."""
        if not customer_ids:
            return
        now = self._clock()
        cancelled = await repo.cancel_pending(conn, customer_ids=customer_ids, now=now)
        effects = _Effects()
        for request in cancelled:
            effects.conclude(outcome(request, Status.SUPPRESSED, now, reason=Reason.ERASED))
        await repo.insert_outcomes(conn, rows=effects.outcomes)
        await enqueue(session=conn, outbox=outbox, messages=effects.messages)
        await repo.erase_customers(conn, customer_ids=customer_ids)

    async def _decide(
        self, conn: AsyncConnection, held: Sequence[HeldRequest], now: datetime, first: bool
    ) -> list[Claimed]:
        """Load what the decisions read, plan every request, write the plans."""
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
        folded = await load_folded(conn, table=profiles, ids=customers)
        templates = await self._templates(conn, held)
        channels = self.channels

        # the customer's most urgent first, where a cap leaves room for fewer than wait
        ordered = sorted(
            held,
            key=lambda h: (h.request.customer_id, -h.request.priority.rank, h.request.requested_at),
        )
        facts: list[tuple[DispatchRequest, Facts]] = []
        wanted: list[tuple[str, str, str]] = []
        for item in ordered:
            request = item.request
            customer = request.customer_id
            known = Facts(
                contact=contacts.get(customer),
                template=templates[request.dispatch_id],
                preferences=prefs.get(customer, Preferences()),
                recent=tuple(recent.get(customer, ())),
                topic_defaults=topics,
                not_before=item.not_before,
                engagement=engagement.get(customer, {}),
                channels=channels,
                webhook_default=self._webhook_default,
                folded=folded.get(customer),
                waited=now - (item.arrived_at or now),
                profile_wait=self._profile_wait,
            )
            facts.append((request, known))
            if waits_for_profile(request, known, now):
                metrics.PROFILE_WAITS.inc()
                continue  # decided once the profile copy caught up: nothing counted now
            decision = judge(request, known, policy, now)
            if decision.action is Action.SEND and decision.channel is not None:
                recent.setdefault(customer, []).append(Sent(decision.channel, now))
            wanted.extend(
                (pool, request.dispatch_id, customer) for pool in pools_wanted(decision, known)
            )
        # the pool codes of the messages being sent, drawn before they are rendered
        drawn = await draw_for(conn, wanted, now=now)
        effects = _Effects()

        def plan_all() -> None:
            for request, known in facts:
                codes = {pool: c for (pool, d), c in drawn.items() if d == request.dispatch_id}
                plan_facts = _with_codes(known, codes) if codes else known
                effects.add(plan(request, plan_facts, policy, now, self.composer))

        # templates render in a worker thread: the event loop (health, tracking pages, the
        # consumer) never waits for one (issue 21); each render is bounded by the sandbox
        await asyncio.to_thread(plan_all)
        # the rows are this transaction's: inserted ``pending``, or locked ``deferred``
        await repo.update_deliveries(
            conn, updates=effects.updates, now=now, only_from=("pending", "deferred")
        )
        await repo.insert_outcomes(conn, rows=effects.outcomes)
        await schedule(conn, table=deferrals, rows=effects.timers)
        await enqueue(session=conn, outbox=outbox, messages=effects.messages)
        # a request for a customer erased before it came: suppressed above, and its row
        # (the context it carried, the customer id) scrubbed like the customer's others
        erased = [c for c, contact in contacts.items() if contact.erased]
        await repo.erase_customers(conn, customer_ids=erased)
        return effects.claimed

    async def _templates(
        self, conn: AsyncConnection, held: Sequence[HeldRequest]
    ) -> dict[str, Template | str]:
        """Each request's template version (pinned by the request, else decided on
        arrival, else the latest) and definition, or why there is none."""
        heads = await repo.template_heads(conn, ids={h.request.template_id for h in held})
        wanted: dict[str, tuple[str, int]] = {}
        found: dict[str, Template | str] = {}
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
                Template(key[1], definition)
                if definition is not None
                else f"no version {key[1]} of template {key[0]!r}"
            )
        return found

    # --- sending and recording ---------------------------------------------------------

    async def deliver(self, claimed: Sequence[Claimed]) -> None:
        """Send every claimed message concurrently, each recorded as soon as its
        provider answered (:class:`~services.dispatcher.recording.SendRecorder`: with the
        others that finished meanwhile); return once all are recorded."""
        if not claimed:
            return
        await asyncio.gather(*(self._send_and_record(c) for c in claimed))

    async def _send_and_record(self, item: Claimed) -> None:
        provider_id, error, attempts = await self._send(item)
        result = SendResult(item, provider_id, error, attempts, self._clock())
        request = item.request
        if error is None and request.send_time.kind == "now":
            waited = (result.at - request.requested_at).total_seconds()
            metrics.REQUEST_TO_HANDOFF_SECONDS.observe(max(0.0, waited))
        recorded = await self._recorder.record(result)
        if recorded is None:
            log.warning(
                "the send of %s was recorded after its lease ran out: it keeps its "
                "interrupted outcome",
                request.dispatch_id,
            )
            return
        count_outcome(recorded)
        if error is not None:
            metrics.DEAD_LETTERS.inc()

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
            for dispatch_id, request in stale:
                reason = (
                    f"{Reason.PROVIDER_ERROR}: interrupted; the provider may or may not "
                    "have the message, so it is not sent again"
                )
                effects.updates.append(DeliveryUpdate(dispatch_id, "failed", reason=reason))
                effects.conclude(outcome(request, Status.FAILED, now, reason=reason))
            # locked above, still ``sending``
            await repo.update_deliveries(
                conn, updates=effects.updates, now=now, only_from=("sending",)
            )
            await repo.insert_outcomes(conn, rows=effects.outcomes)
            await enqueue(session=conn, outbox=outbox, messages=effects.messages)
        if stale:
            self._on_commit()
        return len(stale)


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


def _with_codes(facts: Facts, codes: Mapping[str, str]) -> Facts:
    from dataclasses import replace

    return replace(facts, codes=codes)
