"""What `make bench-actions` runs: the cost of the actions side, in-process, printed as a markdown table.

1. Decisions per second (reviews.services.verdict_submit) for an action without an executor and for
   one with a webhook executor, which also writes the execution row and enqueues it.
2. Deliveries per second sent by one process (actions.services.delivery_attempt): claim, signed
   HTTP POST to a receiver on 127.0.0.1 that checks the signature and answers at once, outcome.
3. The same with the log-only executor (no HTTP): the database part alone.

The database is PostgreSQL when SECAI_BENCH_DATABASE_URL names one (it must be an empty database
the script may migrate), else a SQLite file in a temporary folder; the broker is kombu's
filesystem transport in that folder (messages are written, nobody consumes them). Loopback only.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

N = int(os.environ.get("SECAI_BENCH_ITEMS", "1000"))
SECRET = "bench-secret-0123456789abcdef"


def receiver() -> tuple[ThreadingHTTPServer, dict]:
    from actions.delivery import SIGNATURE_HEADER, verify

    seen = {"ok": 0, "bad": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            good = verify(SECRET, body, self.headers.get(SIGNATURE_HEADER, ""))
            seen["ok" if good else "bad"] += 1
            self.send_response(200 if good else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="secai-bench-actions-"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "secai.settings.local"
    os.environ["DEBUG"] = "0"  # debug logs every query, which is not what is measured
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ["SECAI_VAR_DIR"] = str(tmp / "var")
    os.environ["DATABASE_URL"] = os.environ.get("SECAI_BENCH_DATABASE_URL") or f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ["CELERY_BROKER_URL"] = "filesystem://"
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from actions.models import ActionType, Delivery, Executor
    from actions.services import action_types_seed, delivery_attempt
    from reviews.choices import EventStatus
    from reviews.models import Event, ReviewItem
    from reviews.roles import REVIEWERS
    from reviews.services import source_create, verdict_submit

    call_command("migrate", interactive=False, verbosity=0)
    print(f"database: {connection.vendor}, {N} items per measurement", file=sys.stderr)
    server, seen = receiver()
    source = source_create(name="bench-actions", schema={"bytes": "numeric"})
    action_types_seed(source=source)
    hook = Executor.objects.create(name="bench-hook", url=f"http://127.0.0.1:{server.server_address[1]}/act", secret=SECRET)
    log = Executor.objects.create(name="bench-log", kind="log")
    ActionType.objects.filter(source=source, name="deny").update(executor=hook)
    ActionType.objects.filter(source=source, name="block").update(executor=log)
    reviewer = User.objects.create_user("bench-reviewer")
    reviewer.groups.add(Group.objects.get(name=REVIEWERS))
    import logging

    logging.getLogger("secai.actions").setLevel(logging.WARNING)  # the log executor's lines are not what is measured

    def items(action: str, n: int) -> list[ReviewItem]:
        made = []
        for i in range(n):
            event = Event.objects.create(
                source=source,
                external_id=f"{action}-{i}",
                entity=f"user-{i}",
                occurred_at="2026-12-01T00:00:00Z",
                attributes={"bytes": i},
                status=EventStatus.QUEUED,
                score=0.9,
                proposed_action=action,
            )
            made.append(ReviewItem.objects.create(event=event, source=source, proposed_action=action, score=0.9, priority=2.9))
        return made

    rows: list[tuple[str, str, str]] = []  # (measurement, rate, SQL queries of one call)

    def timed(label: str, calls: list) -> list:
        """Run the calls; the first one's SQL is counted, the rest are timed."""
        with CaptureQueriesContext(connection) as queries:
            results = [calls[0]()]
        t = time.perf_counter()
        results += [call() for call in calls[1:]]
        rows.append((label, f"{(len(calls) - 1) / (time.perf_counter() - t):,.0f}/s", str(len(queries))))
        return results

    def approve(item):
        return lambda: verdict_submit(item=item, reviewer=reviewer, verdict="approve", reason="confirmed_attack")

    def send(pk: int):
        return lambda: delivery_attempt(delivery_id=pk)

    for item in items("allow", 20):
        approve(item)()  # warm-up: connections, caches and code paths, not measured
    for action, label in (
        ("step_up", "approve, action without executor (recorded only)"),
        ("deny", "approve, webhook executor (execution row written and enqueued)"),
        ("block", "approve, log-only executor (execution row written and enqueued)"),
    ):
        timed(label, [approve(item) for item in items(action, N)])
    for kind, label in (("bench-hook", "signed POST to 127.0.0.1, 200 at once"), ("bench-log", "log-only executor")):
        ids = list(Delivery.objects.filter(executor__name=kind, state="pending").values_list("id", flat=True))
        outcomes = timed(f"deliveries sent by one process: {label}", [send(pk) for pk in ids])
        assert outcomes.count("delivered") == len(ids), {o: outcomes.count(o) for o in set(outcomes)}
    again = timed(
        "a delivered delivery redelivered (claim refused, nothing sent)",
        [send(pk) for pk in Delivery.objects.values_list("id", flat=True)],
    )
    assert set(again) == {"skipped"} and seen == {"ok": N, "bad": 0}, seen
    server.shutdown()

    print("| measurement | figure | SQL queries of one call |")
    print("|---|---|---|")
    for what, figure, count in rows:
        print(f"| {what} | {figure} | {count} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
