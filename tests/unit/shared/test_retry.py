"""The retry policy: which errors are retried, how long it waits, when it stops."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tenacity import RetryCallState

from shared.retry import retrying


class Transient(Exception):
    pass


class Flaky:
    """Fails ``failures`` times with ``error``, then answers ``"done"``."""

    def __init__(self, failures: int, error: type[Exception] = Transient) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return "done"


def transient(exc: BaseException) -> bool:
    return isinstance(exc, Transient)


async def test_transient_errors_are_retried_until_the_call_succeeds() -> None:
    flaky = Flaky(3)
    retry = retrying(what="t", retry_on=transient, first_s=0.001, max_s=0.002)
    assert await retry(flaky) == "done"
    assert flaky.calls == 4


async def test_other_errors_are_raised_at_once_as_they_are() -> None:
    flaky = Flaky(3, error=ValueError)
    with pytest.raises(ValueError, match="failure 1"):
        await retrying(what="t", retry_on=transient, first_s=0.001)(flaky)
    assert flaky.calls == 1


async def test_after_the_attempts_the_last_error_is_raised() -> None:
    flaky = Flaky(10)
    with pytest.raises(Transient, match="failure 3"):
        await retrying(what="t", retry_on=transient, first_s=0.001, attempts=3)(flaky)
    assert flaky.calls == 3


async def test_shutdown_ends_the_wait_at_once_and_raises_the_last_error() -> None:
    stopping = asyncio.Event()
    flaky = Flaky(1_000)
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, stopping.set)
    started = loop.time()
    with pytest.raises(Transient):
        await retrying(what="t", retry_on=transient, first_s=30, max_s=60, stopping=stopping)(flaky)
    assert loop.time() - started < 5
    assert flaky.calls == 1


async def test_an_instance_serves_calls_one_after_the_other() -> None:
    retry = retrying(what="t", retry_on=transient, first_s=0.001, attempts=3)
    assert await retry(Flaky(2)) == "done"
    assert await retry(Flaky(2)) == "done"  # the attempts count again from one


@given(attempt=st.integers(min_value=1, max_value=40), first_s=st.floats(0.01, 1.0))
def test_waits_double_from_first_s_with_jitter_up_to_first_s_and_stay_under_max(
    attempt: int, first_s: float
) -> None:
    max_s = 5.0
    retry = retrying(what="t", first_s=first_s, max_s=max_s)
    wait = retry.wait
    state = RetryCallState(retry, None, (), {})
    state.attempt_number = attempt
    seconds = wait(state)
    base = first_s * 2 ** (attempt - 1)
    assert min(base, max_s) <= seconds <= min(base + first_s, max_s)
