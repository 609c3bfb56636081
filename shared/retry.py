"""Retrying with exponential backoff and jitter, on tenacity: one policy for every loop.

:func:`retrying` builds the ``AsyncRetrying`` the loops of a service share (the
consumer's start and its batches, the outbox relay, the publisher's connection,
a backfill's transaction): an exponential wait from ``first_s`` doubling up to
``max_s``, plus up to ``first_s`` of random jitter so that replicas do not retry
in step; a predicate saying which errors are worth retrying (others are raised at
once); and a stop either after ``attempts`` or as soon as a shutdown ``stopping``
event is set (the sleep wakes at once; no further attempt). When it stops, the last
error is raised as it was (``reraise``), so callers catch the errors they know.

    await retrying(what="applying a batch", retry_on=is_transient_db_error)(apply, batch)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_never,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from shared.stopping import sleep_unless_stopped

log = logging.getLogger(__name__)

RetryOn = Callable[[BaseException], bool]


def always(_: BaseException) -> bool:
    return True


class _stop_when_set(stop_base):
    def __init__(self, event: asyncio.Event) -> None:
        self._event = event

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._event.is_set()


def retrying(
    *,
    what: str,
    retry_on: RetryOn = always,
    first_s: float = 0.1,
    max_s: float = 5.0,
    attempts: int | None = None,
    stopping: asyncio.Event | None = None,
    logger: logging.Logger = log,
) -> AsyncRetrying:
    """Call the result with a coroutine function and its arguments; see the module
    docstring. ``what`` names the work in the warning logged before each retry.
    An instance may be reused for calls one after the other, not concurrent ones."""

    last_error: list[BaseException] = []

    def warn(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if error is not None:
            last_error[:] = [error]
        logger.warning(
            "%s failed (%r); attempt %d in %.1fs",
            what,
            error,
            state.attempt_number + 1,
            state.upcoming_sleep,
        )

    stop: stop_base = stop_after_attempt(attempts) if attempts is not None else stop_never
    if stopping is not None:
        stop = stop | _stop_when_set(stopping)

        async def sleep(seconds: float) -> None:
            if await sleep_unless_stopped(stopping, seconds) and last_error:
                raise last_error[0]  # no further attempt once shutdown is asked for
    else:
        sleep = asyncio.sleep  # type: ignore[assignment]

    return AsyncRetrying(
        sleep=sleep,
        stop=stop,
        wait=wait_exponential_jitter(multiplier=first_s, max=max_s, jitter=first_s),
        retry=retry_if_exception(retry_on),
        before_sleep=warn,
        reraise=True,
    )
