"""Applying inputs to runs inside one database transaction, for every caller.

The consumer, the timer sweep and the API (stop, archive) all do the same: lock
the runs concerned, read the facts their branches need from this service's
projections, call the pure machine, then write the runs, their timers, the step
counts and every emitted message (to the outbox) in the same transaction.
:class:`Work` collects the transitions; :meth:`Work.write` persists them.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from services.journey import repository as repo
from services.journey.catalog import Catalog
from services.journey.definition import JourneyDefinition
from services.journey.machine import Facts, Input, Output, Run, Stop, Transition, apply
from services.journey.metrics import MESSAGES_EMITTED, RUN_EVENTS
from services.journey.models import outbox, profiles
from services.journey.watch import watch_requests
from shared.db.outbox import enqueue
from shared.db.profile_projection import load_profiles
from shared.events import customer_events, dispatch_requests, journey_runs
from shared.events.customer_events import CustomerEvent
from shared.events.dispatch_requests import DispatchRequest
from shared.events.journey_runs import ExitReason, JourneyRunEvent
from shared.events.registry import CUSTOMER_EVENTS, DISPATCH_REQUESTS, JOURNEY_RUNS
from shared.kafka.producer import Message

#: a request with no final outcome after this long is requested again (the default of
#: ``TENURE_JOURNEY_OUTCOME_WAIT_S``)
WATCH_AFTER = timedelta(minutes=15)


class UnknownVersion(Exception):
    """A run names a journey version the catalog does not hold."""


def message_of(output: Output) -> Message:
    """The message of an output, written by its topic's one encoder."""
    if isinstance(output, JourneyRunEvent):
        return JOURNEY_RUNS.message(output)
    if isinstance(output, DispatchRequest):
        return DISPATCH_REQUESTS.message(output)
    return CUSTOMER_EVENTS.message(output)


async def load_facts(
    conn: AsyncConnection, catalog: Catalog, customer_ids: Iterable[str]
) -> dict[str, Facts]:
    """Each customer's profile and memberships as this service's projections hold them."""
    ids = sorted(set(customer_ids))
    found = await load_profiles(conn, table=profiles, ids=ids)
    members = await repo.load_memberships(conn, customer_ids=ids)
    facts = {}
    for customer_id in ids:
        profile = found.get(customer_id)
        computed = profile.computed if profile is not None else {}
        facts[customer_id] = Facts(
            traits=profile.traits if profile is not None else {},
            memberships=members.get(customer_id, frozenset()),
            churn_risk=computed.get("churn_risk"),
            predicted_ltv=computed.get("predicted_ltv"),
            rfm_tier=computed.get("rfm_tier"),
            timezone=profile.timezone if profile is not None else None,
        )
    return facts


class Work:
    """The transitions of one transaction."""

    def __init__(
        self, catalog: Catalog, now: datetime, watch_after: timedelta = WATCH_AFTER
    ) -> None:
        self.catalog = catalog
        self.now = now
        #: a request with no final outcome after this long is requested again
        self.watch_after = watch_after
        self.runs: dict[str, Run] = {}
        #: runs entered in this transaction (inserted, not updated)
        self.new: set[str] = set()
        self.outputs: list[Output] = []

    def definition(self, run: Run) -> JourneyDefinition:
        definition = self.catalog.definitions.get((run.journey_id, run.version))
        if definition is None:
            raise UnknownVersion(f"journey {run.journey_id!r} version {run.version}")
        return definition

    def facts_for(self, facts: Facts, journey_id: str, version: int) -> Facts:
        chosen = self.catalog.winners.get((journey_id, version))
        if not chosen:
            return facts
        return dataclasses.replace(facts, winners=chosen)

    def apply(self, run: Run, given: Input, facts: Facts) -> Run:
        if run.journey_id in self.catalog.archived and not isinstance(given, Stop):
            given = Stop(ExitReason.ARCHIVED)
        transition = apply(
            self.definition(run),
            run,
            given,
            self.now,
            self.facts_for(facts, run.journey_id, run.version),
        )
        return self.took(transition)

    def took(self, transition: Transition, *, new: bool = False) -> Run:
        """Keep a transition's run and outputs; ``new``: it entered the run."""
        if new:
            self.new.add(transition.run.run_id)
        if transition.outputs:
            self.runs[transition.run.run_id] = transition.run
            self.outputs += transition.outputs
        return transition.run

    async def write(self, conn: AsyncConnection) -> None:
        if not self.runs:
            return
        await repo.save_runs(conn, changed=list(self.runs.values()), now=self.now, new=self.new)
        events = [o for o in self.outputs if isinstance(o, JourneyRunEvent)]
        await repo.count_steps(conn, events=events)
        await repo.record_steps(conn, events=events)
        # one topic after another (each in order): fewer outbox rows, same per-topic order
        encoded = [(o, message_of(o)) for o in self.outputs]
        messages = sorted((m for _, m in encoded), key=lambda m: _ORDER[m.topic])
        await enqueue(session=conn, outbox=outbox, messages=messages)
        # each request is watched until its final outcome (services/journey/watch.py)
        await watch_requests(
            conn,
            messages=[(o.dispatch_id, m) for o, m in encoded if isinstance(o, DispatchRequest)],
            due_at=self.now + self.watch_after,
        )
        for kind, count in Counter(event.kind.value for event in events).items():
            RUN_EVENTS.labels(kind).inc(count)
        requests = sum(isinstance(o, DispatchRequest) for o in self.outputs)
        traits = sum(isinstance(o, CustomerEvent) for o in self.outputs)
        if requests:
            MESSAGES_EMITTED.labels(dispatch_requests.TOPIC).inc(requests)
        if traits:
            MESSAGES_EMITTED.labels(customer_events.TOPIC).inc(traits)
        MESSAGES_EMITTED.labels(journey_runs.TOPIC).inc(len(events))


_ORDER = {journey_runs.TOPIC: 0, dispatch_requests.TOPIC: 1, customer_events.TOPIC: 2}
