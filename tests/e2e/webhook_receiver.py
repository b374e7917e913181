"""A webhook receiver on loopback for the tests, written only with the ``standardwebhooks``
library: every request is verified with ``Webhook(secret).verify`` before anything else, and
recorded (path, headers, body, arrival instant, whether it verified, what was answered).

Each path is one endpoint; :meth:`Receiver.expect` registers its secrets and a script of
answers (an HTTP status, or ``HANG``: hold the request open until :meth:`Receiver.release`);
once the script is spent every verified request is answered 204. A receiver processes each
webhook-id once (:meth:`Receiver.processed`), as the Standard Webhooks specification asks of
receivers: a repeated id is answered 2xx without being processed again.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

HANG = -1


@dataclass
class Received:
    """One request as it arrived."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()
    verified: bool
    answered: int = 0

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Endpoint:
    secrets: list[str]
    script: list[int]
    processed: list[str] = field(default_factory=list)


class Receiver:
    """The receiver (see the module); ``url(path)`` is where an endpoint should point."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._endpoints: dict[str, _Endpoint] = {}
        self.requests: list[Received] = []
        self._released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver._handle(self, body)

            def log_message(self, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def expect(self, path: str, secrets: list[str], script: list[int] | None = None) -> None:
        """Verify requests to ``path`` with ``secrets`` (each must verify) and answer them
        with ``script`` first."""
        with self._lock:
            self._endpoints[path] = _Endpoint(list(secrets), list(script or []))

    def answer(self, path: str, script: list[int]) -> None:
        """Answer the next requests to ``path`` with ``script``."""
        with self._lock:
            self._endpoints[path].script = list(script)

    def release(self) -> None:
        """Let held (``HANG``) requests go (they are answered 204)."""
        self._released.set()

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            endpoint = self._endpoints.get(handler.path)
        verified = endpoint is not None
        for secret in endpoint.secrets if endpoint else []:
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                verified = False
        got = Received(handler.path, headers, body, time.monotonic(), verified)
        with self._lock:
            self.requests.append(got)
            status = 400 if not verified else (endpoint.script.pop(0) if endpoint.script else 204)
        if status == HANG:
            self._released.wait(60)
            status = 204
        with self._lock:
            got.answered = status
            fresh = endpoint is not None and got.webhook_id not in endpoint.processed
            if fresh and 200 <= status < 300:
                endpoint.processed.append(got.webhook_id)
        handler.send_response(status)
        handler.send_header("content-length", "0")
        handler.end_headers()

    def received(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def processed(self, path: str) -> list[str]:
        """The webhook-ids processed at ``path``, each once, in order."""
        with self._lock:
            return list(self._endpoints[path].processed)

    def wait_for(self, condition: Any, timeout: float = 20.0, what: str = "") -> None:
        """Wait until ``condition()`` is true (fails the test after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what or condition}")

    def close(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
