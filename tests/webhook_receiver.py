"""A platform's webhook endpoint for the tests: a real HTTP server on loopback that verifies each
request with the official ``standardwebhooks`` library and processes each webhook-id once."""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class Receiver:
    """An idempotent receiver. ``answer`` is the status it gives (200 unless a test changes
    it); ``stop()`` and ``start()`` take it down and up on the same port. ``requests`` holds
    every request that arrived, ``processed`` the bodies it acted on, once per webhook-id."""

    def __init__(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.secret: str | None = None
        self.answer = 200
        self.lose_ack_of: set[str] = set()  # ids processed but answered 500 once (lost ack)
        self.requests: list[tuple[str, dict]] = []  # (webhook-id, headers)
        self.processed: dict[str, dict] = {}
        self.rejected = 0
        self.lock = threading.Lock()
        self._server = None

    @property
    def url(self) -> str:
        """The endpoint's URL."""
        return f"http://127.0.0.1:{self.port}/hooks/consent"

    def start(self) -> None:
        """Listen (again) on the port."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                payload = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                self.send_response(receiver.handle(payload, headers))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening: connections are refused until ``start()``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def handle(self, payload: bytes, headers: dict) -> int:
        """Verify, then process once per webhook-id; return the status to answer."""
        with self.lock:
            webhook_id = headers.get("webhook-id", "")
            self.requests.append((webhook_id, headers))
            try:
                Webhook(self.secret).verify(payload, headers)
            except WebhookVerificationError:
                self.rejected += 1
                return 401
            if self.answer != 200:
                return self.answer
            if webhook_id not in self.processed:
                self.processed[webhook_id] = json.loads(payload)
            if webhook_id in self.lose_ack_of:
                self.lose_ack_of.discard(webhook_id)
                return 500
            return 200

    def attempts_of(self, webhook_id: str) -> int:
        """How many requests carried this webhook-id."""
        return sum(1 for seen, _ in self.requests if seen == webhook_id)
