"""``tenure migrate``: every service's Alembic migrations, in flow order."""

from __future__ import annotations

from shared.db.migrations import upgrade
from tenure.services import SERVICES


def migrate_all(database_url: str) -> list[str]:
    """Upgrade each service's schema to head; return the services migrated."""
    done = []
    for spec in SERVICES.values():
        if spec.has_migrations:
            upgrade(script_location=spec.migrations_dir, database_url=database_url)
            done.append(spec.name)
    return done
