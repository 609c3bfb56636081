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

A loop that is not built on tenacity (a timer sweep, a periodic job) keeps a
:class:`FailureStreak`: ``delay = streak.failed(exc)`` after a failed round (sleep
that long), ``streak.succeeded()`` after a good one.

Both log the same way, so a lost database or broker gives a few lines, not a
traceback per try: one WARNING at the first failure of a streak, then at most one
every ``log_every_s`` (30 s) with how many failures there were, and one INFO line on
recovery. An unexpected error is logged at ERROR with its traceback
(:func:`is_connection_error` says which are expected while a server is away).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_never,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

log = logging.getLogger(__name__)

RetryOn = Callable[[BaseException], bool]
T = TypeVar("T")

#: the longest pause between two tries of a background loop
MAX_BACKOFF_S = 10.0
#: a failure streak logs one line at most this often
LOG_EVERY_S = 30.0


def always(_: BaseException) -> bool:
    return True


def is_connection_error(exc: BaseException) -> bool:
    """An error expected while the database or the broker is away (or restarting):
    logged without a traceback."""
    from aiokafka.errors import KafkaError  # the broker client, imported when needed

    from shared.db.transient import is_transient_db_error
    from shared.errors import PublishError

    return isinstance(exc, KafkaError | PublishError | TimeoutError) or is_transient_db_error(exc)


class FailureStreak:
    """The failures of one loop in a row: how long to back off, and what to log.

    :meth:`failed` returns the pause before the next try, ``first_s`` doubling up to
    ``max_s`` plus up to ``first_s`` of jitter, and logs the first failure of a streak
    and then at most one line every ``log_every_s``; :meth:`succeeded` ends the
    streak, logging the recovery when there was one. Errors ``expected`` says are
    expected are logged as one line; others with their traceback.
    """

    def __init__(
        self,
        what: str,
        *,
        logger: logging.Logger = log,
        expected: RetryOn = is_connection_error,
        first_s: float = 0.1,
        max_s: float = MAX_BACKOFF_S,
        log_every_s: float = LOG_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self._logger = logger
        self._expected = expected
        self._first_s = first_s
        self._max_s = max_s
        self._log_every_s = log_every_s
        self._clock = clock
        #: failures since the last success
        self.failures = 0
        self._since = 0.0
        self._logged_at = 0.0
        self._logged_failures = 0

    def failed(self, error: BaseException, *, delay_s: float | None = None) -> float:
        """Count a failure, log it if its turn has come, and return the pause before the
        next try (``delay_s`` when the caller has its own)."""
        self.failures += 1
        if delay_s is None:
            exponent = min(self.failures - 1, 30)
            delay_s = min(self._max_s, self._first_s * 2**exponent)
            delay_s += random.uniform(0, self._first_s)
        now = self._clock()
        expected = self._expected(error)
        exc_info, level = (None, logging.WARNING) if expected else (error, logging.ERROR)
        if self.failures == 1:
            self._since = now
            self._logger.log(
                level,
                "%s failed (%s); retrying in %.1fs",
                self.what,
                _describe(error),
                delay_s,
                exc_info=exc_info,
            )
            self._logged_at, self._logged_failures = now, 1
        elif now - self._logged_at >= self._log_every_s:
            self._logger.log(
                level,
                "%s still failing: %d failures in %.0fs, %d since the last line (%s); "
                "retrying in %.1fs",
                self.what,
                self.failures,
                now - self._since,
                self.failures - self._logged_failures,
                _describe(error),
                delay_s,
                exc_info=exc_info,
            )
            self._logged_at, self._logged_failures = now, self.failures
        return delay_s

    def succeeded(self) -> None:
        """End the streak; log the recovery when there was one."""
        if self.failures:
            self._logger.info(
                "%s recovered after %d failures in %.0fs",
                self.what,
                self.failures,
                self._clock() - self._since,
            )
            self.failures = 0


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


class _LoggedRetrying(AsyncRetrying):
    """``AsyncRetrying`` that tells its streak when a call succeeds after failures."""

    streak: FailureStreak

    async def __call__(  # type: ignore[override]
        self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
    ) -> T:
        result: T = await super().__call__(fn, *args, **kwargs)
        self.streak.succeeded()
        return result


async def sleep_unless_stopped(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``, waking at once when ``stopping`` is set; return whether it is."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    return stopping.is_set()


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
    expected: RetryOn = is_connection_error,
) -> AsyncRetrying:
    """Call the result with a coroutine function and its arguments; see the module
    docstring. ``what`` names the work in the lines a failure streak logs (errors
    ``expected`` says are expected without their traceback). An instance may be
    reused for calls one after the other, not concurrent ones."""

    last_error: list[BaseException] = []
    streak = FailureStreak(what, logger=logger, expected=expected)

    def warn(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if error is not None:
            last_error[:] = [error]
            streak.failed(error, delay_s=state.upcoming_sleep)

    stop: stop_base = stop_after_attempt(attempts) if attempts is not None else stop_never
    if stopping is not None:
        stop = stop | _stop_when_set(stopping)

        async def sleep(seconds: float) -> None:
            if await sleep_unless_stopped(stopping, seconds) and last_error:
                raise last_error[0]  # no further attempt once shutdown is asked for
    else:
        sleep = asyncio.sleep  # type: ignore[assignment]

    retry = _LoggedRetrying(
        sleep=sleep,
        stop=stop,
        wait=wait_exponential_jitter(multiplier=first_s, max=max_s, jitter=first_s),
        retry=retry_if_exception(retry_on),
        before_sleep=warn,
        reraise=True,
    )
    retry.streak = streak
    return retry
