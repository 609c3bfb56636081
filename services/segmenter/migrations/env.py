"""Alembic environment of the segmenter: its tables in the ``segmenter`` schema."""

from services.segmenter.models import SCHEMA, Base
from shared.db.migrations import run_alembic_env

run_alembic_env(target_metadata=Base.metadata, schema=SCHEMA)
