"""Structured JSON logs with the request id of the HTTP request being served."""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Callable

from pythonjsonlogger.json import JsonFormatter

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self._service
        record.request_id = request_id_var.get()
        return True


class RepeatFilter(logging.Filter):
    """Lets a repeated message through once per ``interval_s``, saying how many it held back.

    Only records of loggers under ``prefixes`` are considered (by default the
    Kafka client's: while the broker is down aiokafka logs a connection error
    per attempt, hundreds a minute). A message is the same when its logger,
    level and formatted text are; the first one always passes.
    """

    def __init__(
        self,
        prefixes: tuple[str, ...] = ("aiokafka", "shared.kafka"),
        interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._prefixes = prefixes
        self._interval_s = interval_s
        self._clock = clock
        #: message key -> (when it last passed, how many were held back since)
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefixes):
            return True
        key = (record.name, record.levelno, record.getMessage())
        now = self._clock()
        passed = self._seen.get(key)
        if passed is not None and now - passed[0] < self._interval_s:
            self._seen[key] = (passed[0], passed[1] + 1)
            return False
        if len(self._seen) >= 1024:  # many distinct messages: forget the old ones
            self._seen.clear()
        self._seen[key] = (now, 0)
        if passed is not None and passed[1]:
            record.msg = f"{record.getMessage()} ({passed[1]} more like it in the last "
            record.msg += f"{now - passed[0]:.0f} s were not logged)"
            record.args = None
        return True


def configure_logging(*, service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Send every log record to stderr, as one JSON object a line unless ``fmt='text'``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter(service))
    handler.addFilter(RepeatFilter())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(request_id)s",
                rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(service)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
