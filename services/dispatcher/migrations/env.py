"""Alembic environment of the dispatcher: its tables in the ``dispatcher`` schema."""

from services.dispatcher.models import SCHEMA, metadata
from shared.db.migrations import run_alembic_env

run_alembic_env(target_metadata=metadata, schema=SCHEMA)
