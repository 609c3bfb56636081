"""The local providers ``tenure dev`` gives the dispatcher: a real SMTP server that keeps
every email in a Maildir, and an HTTP endpoint that records every push, WhatsApp,
Messenger and webhook request as a JSON line; with development credentials made on
first run (an FCM service-account key, a VAPID key, a webhook secret) kept in the
state directory."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from tenure.sinks import HttpRecorder, SmtpSink


@dataclass
class LocalProviders:
    smtp: SmtpSink
    recorder: HttpRecorder
    maildir: Path
    requests_log: Path

    def stop(self) -> None:
        self.smtp.stop()
        self.recorder.stop()


def start_local_providers(state: Path) -> LocalProviders:
    maildir = state / "mail" / "Maildir"
    maildir.parent.mkdir(parents=True, exist_ok=True)
    requests_log = state / "provider-requests.jsonl"
    smtp = SmtpSink(maildir=maildir, keep_in_memory=False).start()
    recorder = HttpRecorder(log_path=requests_log, keep_in_memory=False).start()
    return LocalProviders(smtp, recorder, maildir, requests_log)


def dispatcher_environment(state: Path, providers: LocalProviders) -> dict[str, str]:
    """``TENURE_*`` variables pointing the dispatcher's providers at the local ones."""
    url = providers.recorder.url
    account = _fcm_service_account(state, token_url=f"{url}/token")
    return {
        "TENURE_SMTP_HOST": "127.0.0.1",
        "TENURE_SMTP_PORT": str(providers.smtp.port),
        "TENURE_SMTP_SECURITY": "none",
        "TENURE_FCM_BASE_URL": url,
        "TENURE_FCM_SERVICE_ACCOUNT_JSON": json.dumps(account),
        "TENURE_WEBPUSH_VAPID_PRIVATE_KEY": _vapid_key(state),
        "TENURE_WHATSAPP_BASE_URL": url,
        "TENURE_WHATSAPP_PHONE_NUMBER_ID": "100000000000001",
        "TENURE_WHATSAPP_ACCESS_TOKEN": "dev-whatsapp-token",
        "TENURE_MESSENGER_BASE_URL": url,
        "TENURE_MESSENGER_PAGE_ACCESS_TOKEN": "dev-page-token",
        "TENURE_WEBHOOK_URL": f"{url}/webhook",
        "TENURE_WEBHOOK_SECRET": _kept(state / "webhook-secret", lambda: secrets.token_urlsafe(24)),
        # the local recorder is on loopback, which the SSRF guard refuses otherwise
        "TENURE_WEBHOOK_ALLOW": "127.0.0.1,localhost",
        "TENURE_FCM_ALLOW": "127.0.0.1,localhost",
        "TENURE_WEBPUSH_ALLOW": "127.0.0.1,localhost",
        "TENURE_WHATSAPP_ALLOW": "127.0.0.1,localhost",
        "TENURE_MESSENGER_ALLOW": "127.0.0.1,localhost",
    }


def _kept(path: Path, make: object) -> str:
    if path.exists():
        return path.read_text().strip()
    value: str = make().strip()  # type: ignore[operator]
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def _fcm_service_account(state: Path, *, token_url: str) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    def make() -> str:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    pem = _kept(state / "fcm-dev-key.pem", make)
    return {
        "type": "service_account",
        "project_id": "tenure-dev",
        "private_key_id": "dev",
        "private_key": pem + "\n",
        "client_email": "dev@tenure-dev.iam.gserviceaccount.com",
        "token_uri": token_url,
    }


def _vapid_key(state: Path) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def make() -> str:
        key = ec.generate_private_key(ec.SECP256R1())
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    return _kept(state / "vapid-dev-key.pem", make) + "\n"
