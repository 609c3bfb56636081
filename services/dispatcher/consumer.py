"""The dispatcher's consumer: ``profiles`` into the contacts projection, and
``dispatch.requests`` through :class:`~services.dispatcher.dispatching.Dispatcher`.

A batch applies its profiles first (one transaction; an erased customer's pending
and deferred deliveries end ``suppressed`` with the reason ``erased``, and what the
dispatcher holds about them is dropped or scrubbed: :meth:`Dispatcher.erase`; requests
waiting for those profiles to catch up are made due), then
decides its requests (one transaction). The runner commits the offsets once both
are durable; the batch's sends and their records go on meanwhile (a redelivered
request finds its delivery row and sends nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.dispatcher.dispatching import Dispatcher
from services.dispatcher.models import profiles
from shared.db.profile_projection import apply_profile_updates
from shared.db.transient import is_transient_db_error
from shared.events import registry
from shared.events.dispatch_requests import DispatchRequest
from shared.events.profiles import ProfileUpdate, is_erasure
from shared.kafka.consumer import Decoder, Record

DECODERS: dict[str, Decoder[Any]] = registry.decoders(registry.DISPATCH_REQUESTS, registry.PROFILES)


def is_transient(exc: BaseException) -> bool:
    return is_transient_db_error(exc)


@dataclass(kw_only=True, eq=False)
class DispatcherBatchHandler:
    engine: AsyncEngine
    dispatcher: Dispatcher
    on_commit: Callable[[], None] = lambda: None

    async def __call__(self, records: Sequence[Record[Any]]) -> None:
        updates = [r.value for r in records if isinstance(r.value, ProfileUpdate)]
        requests = [r.value for r in records if isinstance(r.value, DispatchRequest)]
        if updates:
            async with self.engine.begin() as conn:
                changes = await apply_profile_updates(conn, table=profiles, updates=updates)
                merged = {u.customer_id for u in updates if u.deleted and not is_erasure(u)}
                await self.dispatcher.erase(conn, customer_ids=sorted(changes.erased - merged))
                # requests waiting for these copies to catch up are looked at again now
                await self.dispatcher.profiles_advanced(
                    conn, customer_ids=sorted(changes.updated | changes.erased)
                )
        if requests:
            # the sends go on while the next batch is decided (their rows are durable)
            await self.dispatcher.handle_requests(requests, wait=False)
