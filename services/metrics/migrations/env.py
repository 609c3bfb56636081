"""Alembic environment of the metrics service: its tables in the ``metrics`` schema."""

from services.metrics.models import SCHEMA, metadata
from shared.db.migrations import run_alembic_env

run_alembic_env(target_metadata=metadata, schema=SCHEMA)
