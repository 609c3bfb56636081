"""A consumer service's moving parts, started and stopped in order, with their health.

A service declares its parts and gets the order for free::

    runtime = ServiceRuntime("journey", engine=engine, publisher=publisher, relay=relay)
    runtime.consumer("consumer", ConsumerRunner(...))
    runtime.loop("timers", TimerSweep(...))
    runtime.loop("claims cleanup", claims_cleanup(...))
    runtime.closing("http client", client.aclose)
    async with runtime.running(app):   # in the FastAPI lifespan
        yield

A relay that keeps what it published (for ``POST /v1/ops/replay``) brings its
periodic prune, the ``outbox prune`` loop.

Start: the publisher (it connects in the background when the broker is down),
then each consumer, the outbox relay and each loop as a task of its own.

Stop: every consumer and loop is signalled at once and background work
(:meth:`in_background`) is cancelled; the consumers finish the batch in hand and
commit it, the loops finish their round (each waited for up to
``stop_timeout_s``); then the relay publishes what those last transactions queued
and stops, the publisher sends what is queued and closes, the ``closing``
callbacks run (last registered first), and the engine is disposed last.

Health: ``/readyz`` gets ``broker`` (the publisher answers, and the broker has
the ``topics`` the service was given: one that restarted without them would
let a producer auto-create them with its own partition count), ``database``,
``consumer`` (every consumer task still runs, and has completed its first group join:
it has its partitions, or knows it gets none) and ``loops`` (every loop and the
relay still run: a part that ended before shutdown was asked for is a fault).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from fastapi import FastAPI
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import collector
from shared.auth import TokenDigests
from shared.clock import Clock, utc_now
from shared.db.claims import claims_cleanup
from shared.db.engine import check_database, create_engine
from shared.db.outbox import OutboxRelay
from shared.http.app import ReadinessCheck, add_readiness_check, create_service_app
from shared.kafka.consumer import BatchHandler, ConsumerRunner, Decoder, IsTransient
from shared.kafka.dlq import DeadLetterPolicy
from shared.kafka.producer import EventPublisher
from shared.settings import KafkaSettings, ServiceSettings
from shared.stopping import PeriodicJob

log = logging.getLogger(__name__)


class ConsumerGroup(Protocol):
    """What a service's settings group says of its consumer."""

    @property
    def consumer_group(self) -> str: ...

    @property
    def max_batch_records(self) -> int: ...


class Loop(Protocol):
    """What runs until shutdown: a :class:`~shared.stopping.StoppableLoop`, a
    :class:`~shared.kafka.consumer.ConsumerRunner`, a :class:`~shared.db.timers.TimerSweep`."""

    async def run(self) -> None: ...

    def signal_shutdown(self) -> None: ...


L = TypeVar("L", bound=Loop)


@dataclass(frozen=True, slots=True)
class OutboxParts:
    """What a service that writes its messages through an outbox builds first: its
    database, its producer (client id ``tenure-<name>``) and the relay between them."""

    name: str
    engine: AsyncEngine
    publisher: EventPublisher
    relay: OutboxRelay

    @classmethod
    def build(
        cls,
        name: str,
        settings: ServiceSettings,
        outbox: Table,
        *,
        relayed: Table | None = None,
        clock: Clock = utc_now,
    ) -> OutboxParts:
        """``relayed``: the table the relay keeps what it published in, for
        ``settings.outbox.replay_window`` (``POST /v1/ops/replay``)."""
        engine = create_engine(settings.database)
        publisher = EventPublisher(settings.kafka, client_id=f"tenure-{name}")
        relay = OutboxRelay(
            engine=engine,
            outbox=outbox,
            publisher=publisher,
            relayed=relayed,
            keep_for=settings.outbox.replay_window,
            clock=clock,
        )
        return cls(name, engine, publisher, relay)

    def service(self, *, topics: Iterable[str] = ()) -> ServiceRuntime:
        """The runtime that starts and stops these parts (and the loops declared on it)."""
        return ServiceRuntime(
            self.name,
            engine=self.engine,
            publisher=self.publisher,
            relay=self.relay,
            topics=topics,
        )


class ServiceRuntime:
    """See the module docstring. Parts are declared before :meth:`start`."""

    def __init__(
        self,
        name: str,
        *,
        engine: AsyncEngine,
        publisher: EventPublisher | None = None,
        relay: OutboxRelay | None = None,
        topics: Iterable[str] = (),
        stop_timeout_s: float = 30.0,
    ) -> None:
        self.name = name
        self.topics = tuple(topics)
        self.engine = engine
        self.publisher = publisher
        self.relay = relay
        self._stop_timeout_s = stop_timeout_s
        self._consumers: dict[str, Loop] = {}
        self._loops: dict[str, Loop] = {}
        self._closers: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        if relay is not None and relay.relayed_table is not None:
            self.loop(
                "outbox prune",
                PeriodicJob(
                    relay.prune,
                    name=f"pruning {relay.relayed_table.fullname}",
                    interval_s=relay.prune_interval_s,
                ),
            )

    # declaring the parts -----------------------------------------------------------

    def consumer(self, name: str, runner: L) -> L:
        """A consumer runner: stopped first, its health is the ``consumer`` check."""
        self._consumers[self._new_name(name)] = runner
        return runner

    def loop(self, name: str, loop: L) -> L:
        """A background loop (sweeps, periodic jobs): stopped with the consumers."""
        self._loops[self._new_name(name)] = loop
        return loop

    def kafka_consumer(
        self,
        *,
        kafka: KafkaSettings,
        group: ConsumerGroup,
        decoders: Mapping[str, Decoder[Any]],
        handler: BatchHandler,
        is_transient: IsTransient,
        name: str = "consumer",
        **options: Any,
    ) -> ConsumerRunner:
        """The service's consumer in ``group``: what it cannot apply goes to the dead-letter
        topic through the service's publisher (``options``: more of :class:`ConsumerRunner`)."""
        if self.publisher is None:
            raise ValueError(f"{self.name} has no publisher for its dead letters")
        return self.consumer(
            name,
            ConsumerRunner(
                settings=kafka,
                group_id=group.consumer_group,
                decoders=decoders,
                handler=handler,
                dead_letters=DeadLetterPolicy(self.publisher),
                is_transient=is_transient,
                max_records=group.max_batch_records,
                **options,
            ),
        )

    def claims_cleanup(self, table: Table, *, clock: Clock, retention_days: int) -> None:
        """The periodic job forgetting the message claims older than ``retention_days``
        (:func:`shared.db.claims.claims_cleanup`)."""
        self.loop(
            "claims cleanup",
            claims_cleanup(
                engine=self.engine,
                table=table,
                clock=clock,
                retention=timedelta(days=retention_days),
            ),
        )

    def closing(self, name: str, close: Callable[[], Awaitable[Any]]) -> None:
        """Something to close after the publisher stopped (an HTTP client…)."""
        self._closers.append((name, close))

    def _new_name(self, name: str) -> str:
        if name in self._consumers or name in self._loops or name == "relay":
            raise ValueError(f"{self.name} has a part named {name!r} already")
        return name

    # running -----------------------------------------------------------------------

    @property
    def tasks(self) -> dict[str, asyncio.Task[None]]:
        """The task of each part, by name, once started (for a watcher of its own)."""
        return dict(self._tasks)

    async def start(self) -> None:
        if self.publisher is not None:
            await self.publisher.start()
        parts: dict[str, Loop] = dict(self._consumers)
        if self.relay is not None:
            parts["relay"] = self.relay
        parts |= self._loops
        for name, part in parts.items():
            self._tasks[name] = asyncio.create_task(part.run(), name=f"{self.name}-{name}")

    async def stop(self) -> None:
        for part in (*self._consumers.values(), *self._loops.values()):
            part.signal_shutdown()
        for task in self._background:
            task.cancel()
        for name in (*self._consumers, *self._loops):
            await self._finish(self._tasks.get(name))
        if self.relay is not None:
            with contextlib.suppress(Exception):
                await self.relay.relay_once()  # what the last batches queued
            self.relay.signal_shutdown()
            await self._finish(self._tasks.get("relay"))
        if self.publisher is not None:
            await self.publisher.stop()
        for name, close in reversed(self._closers):
            try:
                await close()
            except Exception:
                log.exception("closing the %s of %s failed", name, self.name)
        await self.engine.dispose()

    @contextlib.asynccontextmanager
    async def running(self, app: FastAPI | None = None) -> AsyncIterator[ServiceRuntime]:
        """Start, register the readiness checks on ``app``, and stop on the way out."""
        await self.start()
        try:
            if app is not None:
                for name, check in self.readiness_checks().items():
                    add_readiness_check(app, name, check)
            yield self
        finally:
            await self.stop()

    def in_background(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task; a failure is logged; shutdown cancels it."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)

    async def _finish(self, task: asyncio.Task[None] | None) -> None:
        if task is None:
            return
        try:
            await asyncio.wait_for(task, timeout=self._stop_timeout_s)
        except TimeoutError:
            log.error("%s did not stop in %.0fs; cancelled", task.get_name(), self._stop_timeout_s)
        except Exception:
            log.exception("%s ended with an error", task.get_name())

    # health ------------------------------------------------------------------------

    def readiness_checks(self) -> dict[str, ReadinessCheck]:
        checks: dict[str, ReadinessCheck] = {}
        if self.publisher is not None:
            checks["broker"] = functools.partial(self.publisher.check_ready, self.topics)
        checks["database"] = lambda: check_database(self.engine)
        if self._consumers:
            checks["consumer"] = self.check_consumers
        if self._loops or self.relay is not None:
            checks["loops"] = self.check_loops
        return checks

    async def check_consumers(self) -> None:
        """Raise when a consumer task has ended, or has not joined its group yet."""
        self._check_running(self._consumers)
        for name, runner in self._consumers.items():
            assigned = getattr(runner, "assigned", None)
            if isinstance(assigned, asyncio.Event) and not assigned.is_set():
                raise RuntimeError(f"the {name} has no partitions yet (joining its group)")

    async def check_loops(self) -> None:
        """Raise when a loop task, or the relay's, has ended."""
        self._check_running([*self._loops, *(["relay"] if self.relay is not None else [])])

    def _check_running(self, names: Any) -> None:
        for name in names:
            task = self._tasks.get(name)
            if task is not None and task.done():
                error = None if task.cancelled() else task.exception()
                raise RuntimeError(f"the {name} stopped: {error!r}")


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", exc_info=task.exception())


class HasServiceRuntime(Protocol):
    """A service's ``Runtime``: what its routes use, with the parts it runs."""

    @property
    def service(self) -> ServiceRuntime: ...


def service_app(
    *,
    title: str,
    description: str,
    settings: ServiceSettings,
    clock: Clock,
    admin_token_digests: Iterable[str],
    runtime: Callable[[], HasServiceRuntime],
    install: Callable[[FastAPI], None],
    tuned_for_throughput: bool = True,
) -> FastAPI:
    """The app of a service whose parts a :class:`ServiceRuntime` runs.

    Its lifespan builds the service's runtime (``runtime()``), keeps it in
    ``app.state.runtime`` for the routes and runs its parts for the app's life (with the
    collector :func:`~shared.collector.tuned_for_throughput` unless told otherwise). The
    admin routes accept the tokens of ``admin_token_digests``; ``install`` adds the
    service's routes."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built = runtime()
        app.state.runtime = built
        async with built.service.running(app):
            with collector.tuned_for_throughput() if tuned_for_throughput else nullcontext():
                yield

    app = create_service_app(title=title, description=description, version="1", lifespan=lifespan)
    app.state.settings = settings
    app.state.clock = clock
    app.state.admin_tokens = TokenDigests(admin_token_digests)
    install(app)
    return app
