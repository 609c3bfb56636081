"""Typed access to a declarative model's Core table."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table
from sqlalchemy.orm import DeclarativeBase


def table_of(model: type[DeclarativeBase]) -> Table:
    """``model.__table__`` as the ``Table`` it is (SQLAlchemy types it as ``FromClause``)."""
    return cast(Table, model.__table__)
