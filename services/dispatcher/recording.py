"""Recording sends as they finish: a group commit.

Each send's result (``sent``, or ``failed`` with its dead letter) is handed to a
:class:`SendRecorder` the moment its provider answers. One writer task records what
has finished: it waits ``linger_s`` for company, then writes every result waiting
(at most ``max_group``) in one transaction: the delivery rows (only those still
``sending``: a delivery leaves ``sending`` once, and one whose lease ran out keeps its
``interrupted`` outcome), the outcomes, and their outbox messages. Results finishing
while a transaction is in flight wait for the next one, so the groups grow with the
rate and a quiet dispatcher records each send alone, a few milliseconds after it.

A message therefore waits for its own send and the transaction it falls in, not for
the slowest send of its consumed batch (docs/performance.md, "Dispatcher").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from services.dispatcher import metrics
from services.dispatcher import repository as repo
from services.dispatcher.messages import dead_letter, outcome, outcome_message
from services.dispatcher.models import outbox, profiles
from services.dispatcher.plan import Claimed
from services.dispatcher.repository import DeliveryUpdate
from shared.clock import Clock
from shared.db.outbox import enqueue
from shared.db.profile_projection import erased_ids
from shared.db.transient import is_transient_db_error
from shared.events.dispatch_outcomes import DispatchOutcome, Status
from shared.kafka.producer import Message
from shared.retry import retrying

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SendResult:
    """What one send came to: a provider message id, or the reason it failed."""

    claimed: Claimed
    provider_id: str | None
    error: str | None
    attempts: int
    #: when the provider answered (the outcome's ``at``)
    at: datetime

    @property
    def dispatch_id(self) -> str:
        return self.claimed.request.dispatch_id

    def update(self) -> DeliveryUpdate:
        if self.error is None:
            return DeliveryUpdate(
                self.dispatch_id,
                "sent",
                provider_message_id=self.provider_id,
                attempts=self.attempts,
            )
        return DeliveryUpdate(self.dispatch_id, "failed", reason=self.error, attempts=self.attempts)

    def outcome(self) -> DispatchOutcome:
        request, item = self.claimed.request, self.claimed
        return outcome(
            request,
            Status.SENT if self.error is None else Status.FAILED,
            self.at,
            channel=item.outgoing.channel,
            reason=self.error,
            provider_message_id=self.provider_id,
            template_version=item.template_version,
        )

    def messages(self, result: DispatchOutcome) -> list[Message]:
        """The outbox messages of a recorded result: a failure's dead letter, the
        outcome."""
        dead = [] if self.error is None else [dead_letter(self.claimed.request, self.error)]
        return [*dead, outcome_message(result)]


_Waiting = tuple[SendResult, "asyncio.Future[DispatchOutcome | None]"]


class SendRecorder:
    """Records send results in small groups; see the module docstring."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        clock: Clock,
        on_commit: Callable[[], None] = lambda: None,
        stopping: asyncio.Event | None = None,
        linger_s: float = 0.02,
        max_group: int = 500,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._on_commit = on_commit
        self._stopping = stopping
        self._linger_s = linger_s
        self._max_group = max(1, max_group)
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, result: SendResult) -> DispatchOutcome | None:
        """Return once the result is durable: the outcome recorded (``None``: the
        delivery had left ``sending`` meanwhile, and keeps the outcome it got)."""
        done: asyncio.Future[DispatchOutcome | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((result, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="dispatcher-records")
        return await asyncio.shield(done)

    async def _write_all(self) -> None:
        while self._waiting:
            if self._linger_s > 0:
                await asyncio.sleep(self._linger_s)
            group = self._waiting[: self._max_group]
            del self._waiting[: len(group)]
            try:
                # The messages are out: keep trying to record them (a redelivered
                # request would not send them again, and left unrecorded they would end
                # "interrupted").
                recorded: dict[str, DispatchOutcome] = await retrying(
                    what="recording sends",
                    retry_on=is_transient_db_error,
                    stopping=self._stopping,
                )(self._write, [r for r, _ in group])
            except Exception as exc:
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                continue
            except BaseException:  # cancelled: nobody waits forever
                for _, done in [*group, *self._waiting]:
                    done.cancel()
                self._waiting.clear()
                raise
            self._on_commit()
            for result, done in group:
                if not done.done():
                    done.set_result(recorded.get(result.dispatch_id))

    async def _write(self, results: Sequence[SendResult]) -> dict[str, DispatchOutcome]:
        now = self._clock()
        async with self._engine.begin() as conn:
            recorded = await repo.update_deliveries(
                conn, updates=[r.update() for r in results], now=now, only_from=("sending",)
            )
            kept = [r for r in results if r.dispatch_id in recorded]
            outcomes = [r.outcome() for r in kept]
            messages = [m for r, o in zip(kept, outcomes, strict=True) for m in r.messages(o)]
            await repo.insert_outcomes(conn, rows=outcomes)
            await enqueue(session=conn, outbox=outbox, messages=messages)
            # a customer erased while their message was with the provider
            gone = await erased_ids(
                conn, table=profiles, ids=[r.claimed.request.customer_id for r in results]
            )
            await repo.erase_customers(conn, customer_ids=sorted(gone))
        metrics.RECORD_GROUP_SIZE.observe(len(results))
        return {o.dispatch_id: o for o in outcomes}
