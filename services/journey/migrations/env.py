"""Alembic environment of the journey service: its tables in the ``journey`` schema."""

from services.journey.models import SCHEMA, metadata
from shared.db.migrations import run_alembic_env

run_alembic_env(target_metadata=metadata, schema=SCHEMA)
