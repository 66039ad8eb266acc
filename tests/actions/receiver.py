"""A webhook receiver on 127.0.0.1 for the tests, as a client system would run one: it checks the
HMAC signature of every call, applies each Idempotency-Key once (the side effect), and can be told
to fail its first calls or to hang, to exercise retries and dead workers."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from actions.delivery import SIGNATURE_HEADER, verify


def webhook_for(source, receiver: Receiver, *, action: str = "deny", **fields):
    """A webhook executor that calls `receiver` (reversals on /undo), attached to `action` of source."""
    from actions.models import ActionType, Executor

    executor = Executor.objects.create(
        name=fields.pop("name", "idp-hook"),
        url=f"{receiver.url}/act",
        reversal_url=f"{receiver.url}/undo",
        secret=receiver.secret,
        **{"max_attempts": 3, "timeout_seconds": 5, **fields},
    )
    ActionType.objects.filter(source=source, name=action).update(executor=executor)
    return executor


@dataclass
class Call:
    path: str
    key: str
    signature_ok: bool
    attempt: int
    body: dict
    at: float


@dataclass
class Receiver:
    secret: str
    fail_first: int = 0  # answer 503 to this many calls
    hang_seconds: float = 0.0  # hold calls this long before answering (a worker can die meanwhile)
    hang_first: int | None = None  # hold only this many first calls (None: every call)
    calls: list[Call] = field(default_factory=list)
    applied: dict[str, int] = field(default_factory=dict)  # idempotency key -> side effects applied (0 or 1)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def calls_for(self, key: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.key == key]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = self.headers.get("Idempotency-Key", "")
                ok = verify(receiver.secret, raw, self.headers.get(SIGNATURE_HEADER, ""))
                with receiver.lock:
                    receiver.calls.append(
                        Call(
                            self.path,
                            key,
                            ok,
                            int(self.headers.get("X-SecAI-Attempt", 0)),
                            json.loads(raw or b"{}"),
                            time.monotonic(),
                        )
                    )
                    failing = len(receiver.calls) <= receiver.fail_first
                    hanging = receiver.hang_first is None or len(receiver.calls) <= receiver.hang_first
                if receiver.hang_seconds and hanging:
                    time.sleep(receiver.hang_seconds)
                if not ok:
                    self._answer(401, b'{"error": "bad signature"}')
                    return
                if failing:
                    self._answer(503, b'{"error": "try later"}')
                    return
                with receiver.lock:
                    # The side effect happens once per key, however often the key arrives.
                    receiver.applied[key] = 1
                self._answer(200, b'{"ok": true}')

            def _answer(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender died or gave up meanwhile

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
