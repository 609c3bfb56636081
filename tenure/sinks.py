"""Local stand-ins for the providers, for ``tenure dev``, the tests and the benchmark:
real servers on loopback, never in-process fakes.

- :class:`SmtpSink` — an SMTP server (aiosmtpd) that keeps every message it accepts
  in a Maildir a person can open (``mutt -f DIR``, or any mail client), and in memory;
  it can be told to answer some messages with an error.
- :class:`HttpRecorder` — an HTTP server that records every request (method, path,
  headers, body; in memory and, given a path, as JSON lines) and answers as the
  provider would: an FCM message name, a WhatsApp message id, a Messenger
  message id, an OAuth2 token, else ``201``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import mailbox
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from tenure.embedded import free_port, wait_for_port

#: an SMTP reply to give instead of accepting (``"451 4.3.0 try later"``), or None
SmtpReply = Callable[[list[str], bytes], str | None]


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or envelope.content
        recipients = list(envelope.rcpt_tos)
        reply = self._sink.reply(recipients, content) if self._sink.reply else None
        if reply is not None:
            return reply
        delay = self._sink.delay_s
        if self._sink.delay_for is not None:
            delay = max(delay, self._sink.delay_for(recipients))
        if delay:
            await asyncio.sleep(delay)
        self._sink._keep(recipients, content)
        return "250 OK"


class SmtpSink:
    """An SMTP server on loopback; messages in :attr:`messages` and under ``maildir``."""

    def __init__(
        self,
        *,
        maildir: Path | None = None,
        port: int | None = None,
        reply: SmtpReply | None = None,
        keep_in_memory: bool = True,
        delay_s: float = 0.0,
        accept_log: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        #: how long each message takes to accept (a slow server)
        self.delay_s = delay_s
        #: recipients → how long their message takes to accept (a slow mailbox)
        self.delay_for: Callable[[list[str]], float] | None = None
        self.maildir = maildir
        self.reply = reply
        self.keep_in_memory = keep_in_memory
        self.messages: list[EmailMessage] = []
        self.count = 0
        self._lock = threading.Lock()
        self._box = mailbox.Maildir(str(maildir), create=True) if maildir else None
        #: one line per accepted message: its ``time.time()``, its recipients (commas),
        #: its subject, separated by tabs
        self._accept_log = accept_log.open("a", buffering=1) if accept_log else None
        self._controller: Any = None

    def start(self) -> SmtpSink:
        from aiosmtpd.controller import Controller

        self._controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, ready_timeout=10
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._accept_log is not None:
            self._accept_log.close()
            self._accept_log = None

    def _keep(self, recipients: list[str], content: bytes) -> None:
        with self._lock:
            self.count += 1
            if self._accept_log is not None:
                at, subject = time.time(), _subject(content)
                self._accept_log.write(f"{at:.6f}\t{','.join(recipients)}\t{subject}\n")
            if self._box is not None:
                self._box.add(content)
            if self.keep_in_memory:
                parsed = message_from_bytes(content, policy=policy.default)
                self.messages.append(parsed)

    async def wait_for(self, count: int, within_s: float = 15.0) -> list[EmailMessage]:
        deadline = time.monotonic() + within_s
        while self.count < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.count} messages arrived, not {count}")
            await asyncio.sleep(0.02)
        return list(self.messages)


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpRecorder:
    """An HTTP server on loopback recording every request; see the module docstring.

    ``status`` maps a path prefix to the status to answer with (a list: one per call,
    the last repeated), for tests of retries and permanent failures.
    """

    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    keep_in_memory: bool = True
    status: dict[str, list[int]] = field(default_factory=dict)
    #: path prefix → a ``Location`` to answer ``302`` with
    redirects: dict[str, str] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    count: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _thread: threading.Thread | None = None
    _server: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpRecorder:
        import uvicorn

        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            interface="asgi3",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="recorder")
        self._thread.start()
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def matching(self, prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith(prefix)]

    async def wait_for(self, prefix: str, count: int, within_s: float = 15.0) -> list[Recorded]:
        deadline = time.monotonic() + within_s
        while len(self.matching(prefix)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.matching(prefix))} requests to {prefix}")
            await asyncio.sleep(0.02)
        return self.matching(prefix)

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path: str = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        recorded = Recorded(scope["method"], path, scope["query_string"].decode(), headers, body)
        self.count += 1
        if self.keep_in_memory:
            self.requests.append(recorded)
        if self.log_path is not None:
            with self.log_path.open("a") as out:
                entry = {
                    "at": time.time(),
                    "method": recorded.method,
                    "path": path,
                    "query": recorded.query,
                    "headers": headers,
                    "body": _text(body),
                }
                out.write(json.dumps(entry) + "\n")
        status, answer = self._answer(path)
        payload = json.dumps(answer).encode()
        response_headers = [(b"content-type", b"application/json")]
        for prefix, location in self.redirects.items():
            if path.startswith(prefix):
                status = 302
                response_headers.append((b"location", location.encode()))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})

    def _answer(self, path: str) -> tuple[int, Any]:
        for prefix, statuses in self.status.items():
            if path.startswith(prefix):
                status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
                if status >= 300:
                    return status, {"error": {"code": status, "message": "as configured"}}
        return provider_answer(path, next(self._ids))


def provider_answer(path: str, n: int) -> tuple[int, Any]:
    """The status and JSON body a provider answers a request to ``path`` with; ``n``
    numbers the message ids."""
    if path.endswith("/token"):
        return 200, {"access_token": f"token-{n}", "expires_in": 3600, "token_type": "Bearer"}
    if path.endswith("messages:send"):
        project = path.split("/")[3] if path.count("/") >= 4 else "p"
        return 200, {"name": f"projects/{project}/messages/{n}"}
    if path.endswith("/me/messages"):
        return 200, {"recipient_id": "psid", "message_id": f"m_{n}"}
    if path.endswith("/messages"):
        return 200, {"messaging_product": "whatsapp", "messages": [{"id": f"wamid.{n}"}]}
    return 201, {"id": n}


_SUBJECT = re.compile(rb"^Subject:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)


def _subject(content: bytes) -> str:
    """A message's Subject header as sent (its first line), without parsing the message."""
    head = content.split(b"\r\n\r\n", 1)[0]
    found = _SUBJECT.search(head)
    return found.group(1).decode("utf-8", "replace").replace("\t", " ") if found else ""


def _text(body: bytes) -> str:
    try:
        return body.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(body).decode()


def main(argv: list[str] | None = None) -> int:
    """``python -m tenure.sinks --smtp-port P [--http-port Q] [--accept-log FILE]``: the
    SMTP server and, given a port, the HTTP recorder in a process of their own (the
    benchmarks' providers), until SIGTERM or SIGINT; with ``--accept-log``, a line per
    accepted email (time, recipients). (``tenure bench dispatcher`` answers HTTP with
    :mod:`tenure.responder` instead: faster, it records nothing.)"""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m tenure.sinks")
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, default=None)
    parser.add_argument("--accept-log", type=Path, default=None)
    args = parser.parse_args(argv)
    smtp = SmtpSink(port=args.smtp_port, keep_in_memory=False, accept_log=args.accept_log).start()
    recorder = (
        HttpRecorder(port=args.http_port, keep_in_memory=False).start()
        if args.http_port is not None
        else None
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    if recorder is not None:
        recorder.stop()
    smtp.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
