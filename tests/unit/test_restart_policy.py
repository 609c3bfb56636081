"""tenure dev's restarts: backoff that doubles, resets after a stable run, and a limit."""

from __future__ import annotations

from tenure.supervise import RestartPolicy


def test_backoff_doubles_up_to_the_cap_then_gives_up() -> None:
    policy = RestartPolicy(first_delay_s=1, max_delay_s=4, max_restarts=5, window_s=300)
    delays = [policy.next_delay(now=float(i), ran_for_s=0.5) for i in range(6)]
    assert delays == [1, 2, 4, 4, 4, None]


def test_old_restarts_leave_the_window() -> None:
    policy = RestartPolicy(max_restarts=2, window_s=100)
    assert policy.next_delay(now=0, ran_for_s=1) is not None
    assert policy.next_delay(now=10, ran_for_s=1) is not None
    assert policy.next_delay(now=20, ran_for_s=1) is None
    assert policy.next_delay(now=111, ran_for_s=1) is not None


def test_a_stable_run_starts_again_from_the_first_delay() -> None:
    policy = RestartPolicy(first_delay_s=1, stable_after_s=60)
    assert policy.next_delay(now=0, ran_for_s=1) == 1
    assert policy.next_delay(now=5, ran_for_s=1) == 2
    assert policy.next_delay(now=100, ran_for_s=90) == 1
