"""The services Tenure runs: where each one's app and migrations live, and its port."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import services


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    port: int
    has_migrations: bool

    @property
    def app_factory(self) -> str:
        return f"services.{self.name}.app:create_app"

    @property
    def migrations_dir(self) -> Path:
        return Path(services.__file__).parent / self.name / "migrations"


SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("ingest", 8001, has_migrations=False),
        ServiceSpec("segmenter", 8002, has_migrations=True),
        ServiceSpec("journey", 8003, has_migrations=True),
        ServiceSpec("dispatcher", 8004, has_migrations=True),
        ServiceSpec("metrics", 8005, has_migrations=True),
        ServiceSpec("console", 8006, has_migrations=False),
    )
}
