"""Which database errors make the consumer retry a batch rather than dead-letter it."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from services.segmenter.consumer import BatchOutdated, is_transient


def _wrapped(error: Exception) -> DBAPIError:
    return DBAPIError("INSERT …", None, error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.SerializationError("could not serialize access"),
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ConnectionResetError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_conflicts_and_lost_connections_are_retried_raw_or_wrapped(error: Exception) -> None:
    assert is_transient(error)
    assert is_transient(_wrapped(error))


def test_a_batch_that_kept_meeting_merges_or_erasures_is_retried_by_the_runner() -> None:
    assert is_transient(BatchOutdated({"anon-1": "u-1"}, []))
    assert is_transient(BatchOutdated({}, ["erased-1"]))


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.InvalidTextRepresentationError("invalid input syntax"),
        asyncpg.UndefinedTableError("relation does not exist"),
        ValueError("a bug"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_a_retry_cannot_fix_are_not(error: Exception) -> None:
    assert not is_transient(error)
    assert not is_transient(_wrapped(error))
