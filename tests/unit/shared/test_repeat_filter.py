"""Repeated Kafka client log lines are let through once per interval, with a count."""

from __future__ import annotations

import logging

from shared.logging import RepeatFilter


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeats_pass_once_per_interval_with_the_count() -> None:
    clock = Clock()
    repeat = RepeatFilter(interval_s=30, clock=clock)
    passed = []
    for second in range(90):  # 4 attempts a second for 90 s
        clock.now = float(second)
        for _ in range(4):
            record = _record("aiokafka", "Unable connect to node with id %s: %s", 1, "refused")
            if repeat.filter(record):
                passed.append(record.getMessage())
    assert len(passed) == 3
    assert passed[0] == "Unable connect to node with id 1: refused"
    assert passed[1].endswith("(119 more like it in the last 30 s were not logged)")


def test_other_messages_and_loggers_are_untouched() -> None:
    repeat = RepeatFilter(clock=Clock())
    assert repeat.filter(_record("aiokafka", "a"))
    assert repeat.filter(_record("aiokafka", "b"))  # a different message
    assert repeat.filter(_record("aiokafka", "a", level=logging.WARNING))
    assert not repeat.filter(_record("aiokafka", "a"))
    assert all(repeat.filter(_record("services.ingest.app", "a")) for _ in range(10))
