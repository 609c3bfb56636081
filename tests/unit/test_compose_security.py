"""Issue 21: the compose file ships no known secret and publishes no admin port on every
interface by default."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import yaml

from shared.settings import KNOWN_DEV_SECRETS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = (ROOT / "docker-compose.yml").read_text()
#: the two services a public deployment exposes (collection, tracking pages)
PUBLIC = {"ingest", "dispatcher"}


def test_no_known_secret_or_its_digest_is_in_the_compose_file() -> None:
    for secret in KNOWN_DEV_SECRETS:
        assert hashlib.sha256(secret.encode()).hexdigest() not in COMPOSE
        assert f": {secret}" not in COMPOSE


def test_every_port_is_bound_to_loopback_unless_public_by_choice() -> None:
    services = yaml.safe_load(COMPOSE)["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            if name in PUBLIC:
                assert port.startswith("${TENURE_PUBLIC_BIND:-127.0.0.1}:"), (name, port)
            else:
                assert port.startswith("127.0.0.1:"), (name, port)


def test_secrets_come_from_the_env_file_and_are_required() -> None:
    for variable in (
        "TENURE_WRITE_KEY_HASHES",
        "TENURE_ADMIN_TOKEN_HASHES",
        "TENURE_DISPATCHER_LINK_SECRET",
        "TENURE_CONSOLE_SESSION_SECRET",
    ):
        assert re.search(rf"\$\{{{variable}:\?", COMPOSE), variable
        assert f"{variable}=" in (ROOT / "deploy" / "env.example").read_text()
