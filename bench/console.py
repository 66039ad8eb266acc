"""Figure 4 of the benchmark: console latency with a million events. Queue page, deep keyset page,
filtered queue, item page and claim-next, measured in-process (Django test client, so the figure is
server time without network) against PostgreSQL. `make bench ONLY=console` runs it as a child of
the harness on a database of its own (about 1,000,000 events, 100,000 open review items, 50,000
decided); `python -m bench.console` alone drops and rebuilds secai_benchh_console itself.

Events are NSL-KDD KDDTest+ rows cycled with new external ids, entities spread over 5,000 hosts,
and times spread over 30 days. Prints p50/p95/p99 in milliseconds per page and the query counts.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

from bench.harness import DB_PREFIX, ROOT, database_recreate, db_url, env_int, percentile

# The console's own sizes, independent of SECAI_BENCH_EVENTS (which sizes figure 6).
EVENTS = env_int("SECAI_BENCH_CONSOLE_EVENTS", 1_000_000)
OPEN = env_int("SECAI_BENCH_OPEN", 100_000)
DECIDED = env_int("SECAI_BENCH_DECIDED", 50_000)
ROUNDS = env_int("SECAI_BENCH_ROUNDS", 200)


def main() -> int:
    out = os.environ.get("SECAI_BENCH_CONSOLE_OUT")
    if not out:  # run on its own: a database of its own
        db = f"{DB_PREFIX}_console"
        database_recreate(db)
        os.environ["DATABASE_URL"] = db_url(db)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "secai.settings.local")
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "1"
    import tempfile

    os.environ.setdefault("SECAI_VAR_DIR", tempfile.mkdtemp(prefix="secai-bench-console-"))
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    setup_test_environment()  # the test client then exposes each response's template context
    call_command("migrate", verbosity=0)
    from reviews.csv_import import infer_schema, nsl_kdd_layout, read_events
    from reviews.services import source_create

    data = ROOT / "data" / "nsl-kdd"
    schema = infer_schema(data / "KDDTrain+_20Percent.csv.gz", {"label", "difficulty"})
    source = source_create(name="nsl-kdd", schema=schema)
    from datetime import UTC, datetime, timedelta

    layout = nsl_kdd_layout(schema, id_prefix="t", start=datetime.now(UTC), spacing=timedelta(seconds=1), labelled=False)
    templates = [e["attributes"] for e, _ in read_events(data / "KDDTest+.csv.gz", layout)]
    reviewer = User.objects.create_user("bench-reviewer", password="x")
    reviewer.groups.add(Group.objects.get(name="reviewers"))
    other = User.objects.create_user("bench-other", password="x")
    other.groups.add(Group.objects.get(name="reviewers"))
    source.reviewers.add(reviewer, other)

    started = time.monotonic()
    import json

    with connection.cursor() as cur:
        # Templates go into a temporary table; events are generated in SQL so a million rows take
        # seconds, not the hours a Python loop of inserts would.
        cur.execute("CREATE TEMP TABLE tpl (n int primary key, attrs jsonb)")
        with cur.copy("COPY tpl (n, attrs) FROM STDIN") as copy:
            for i, attrs in enumerate(templates):
                copy.write_row((i, json.dumps(attrs)))
        cur.execute(
            """
            INSERT INTO reviews_event (source_id, external_id, entity, occurred_at, received_at, attributes, status,
                                       score, proposed_action, scored_at)
            SELECT %s, 'ev-' || g, 'host-' || (g %% 5000), now() - (g || ' seconds')::interval * 2.6,
                   now() - (g || ' seconds')::interval * 2.6, tpl.attrs,
                   CASE WHEN g <= %s THEN 'queued' WHEN g <= %s THEN 'decided' ELSE 'cleared' END,
                   CASE WHEN g <= %s THEN 0.5 + (g %% 500) / 1000.0 ELSE (g %% 500) / 1000.0 END,
                   CASE WHEN g <= %s THEN (CASE WHEN g %% 3 = 0 THEN 'deny' ELSE 'step_up' END) ELSE 'allow' END,
                   now()
            FROM generate_series(1, %s) AS g JOIN tpl ON tpl.n = g %% %s
            """,
            [source.pk, OPEN, OPEN + DECIDED, OPEN + DECIDED, OPEN + DECIDED, EVENTS, len(templates)],
        )
        cur.execute(
            """
            INSERT INTO reviews_reviewitem (event_id, source_id, proposed_action, score, priority, state, kind,
                                            required_verdicts, created_at, decided_at, mode, fallback)
            SELECT e.id, e.source_id, e.proposed_action, e.score,
                   (CASE e.proposed_action WHEN 'deny' THEN 2 ELSE 1 END) + e.score,
                   CASE WHEN e.status = 'queued' THEN 'open' ELSE 'decided' END, 'flagged', 1, e.received_at,
                   CASE WHEN e.status = 'decided' THEN e.received_at END, 'propose', ''
            FROM reviews_event e WHERE e.status IN ('queued', 'decided')
            """
        )
        cur.execute(
            """
            INSERT INTO reviews_verdict (item_id, reviewer_id, verdict, reason, note, created_at)
            SELECT i.id, %s, CASE WHEN i.id %% 4 = 0 THEN 'overturn' ELSE 'approve' END,
                   CASE WHEN i.id %% 4 = 0 THEN 'known_benign' ELSE 'confirmed_attack' END, '', i.created_at
            FROM reviews_reviewitem i WHERE i.state = 'decided'
            """,
            [other.pk],
        )
        cur.execute("ANALYZE")
    print(
        f"   console: loaded {EVENTS:,} events, {OPEN:,} open and {DECIDED:,} decided items in {time.monotonic() - started:.0f}s",
        file=sys.stderr,
    )

    client = Client()
    client.force_login(reviewer)
    api = Client()
    api.force_login(other)

    def checked(response, release=None):
        """A page or API call must succeed (a service call returns no response); release= puts
        back what it claimed."""
        status = getattr(response, "status_code", 200)
        if status not in (200, 204):
            raise SystemExit(f"console benchmark: {response.request.get('PATH_INFO')} answered {status}")
        if release is not None:
            ReviewItem.objects.filter(claimed_by=release).update(state="open", claimed_by=None, claim_expires_at=None)
        return response

    from reviews.models import ReviewItem

    open_ids = list(ReviewItem.objects.filter(state="open").order_by("?").values_list("id", flat=True)[:ROUNDS])
    first = client.get("/")
    assert first.status_code == 200
    deep_cursor = None
    resp = first
    for _ in range(20):  # walk 20 pages deep to get a realistic cursor
        deep_cursor = resp.context["next_cursor"]
        resp = client.get(f"/?after={deep_cursor}")

    def measure(name: str, fn) -> tuple[str, float, float, float, int]:
        checked(fn())  # warm, and a page that answers an error is not a figure
        times = []
        with CaptureQueriesContext(connection) as ctx:
            fn()
        queries = len(ctx.captured_queries)
        for _ in range(ROUNDS):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        print(f"   console: {name} p95 {percentile(times, 95):.1f} ms", file=sys.stderr, flush=True)
        return name, statistics.median(times), percentile(times, 95), percentile(times, 99), queries

    ids = iter(open_ids * 3)
    results = [
        measure("queue, first page (50 rows)", lambda: client.get("/")),
        measure("queue, 21st page (keyset cursor)", lambda: client.get(f"/?after={deep_cursor}")),
        measure("queue filtered by entity", lambda: client.get("/?entity=host-42")),
        measure("queue filtered by action and score", lambda: client.get("/?action=deny&min_score=0.8")),
        measure("item page (history, similar verdicts)", lambda: client.get(f"/items/{next(ids)}/")),
    ]

    def claim_and_release():
        from reviews import services

        item = services.review_item_claim_next(reviewer=reviewer)
        services.review_item_release(item=item, reviewer=reviewer)

    results.append(measure("claim-next (service, incl. release)", claim_and_release))

    def skip_and_take_next():
        from reviews import services
        from reviews.models import ItemSkip

        item = services.review_item_claim_next(reviewer=reviewer)
        services.review_item_skip(item=item, reviewer=reviewer)
        nxt = services.review_item_claim_next(reviewer=reviewer)
        services.review_item_release(item=nxt, reviewer=reviewer)
        ItemSkip.objects.filter(reviewer=reviewer).delete()  # the same work every round

    results.append(measure("skip, then claim-next (service, incl. release)", skip_and_take_next))
    results.append(measure("near-identical groups page (5,000 open items pooled)", lambda: client.get("/clusters/")))
    results.append(
        measure(
            "claim-next via POST /api/v1/review-items/claim-next/",
            lambda: checked(api.post("/api/v1/review-items/claim-next/", content_type="application/json"), release=other),
        )
    )

    print(f"\n{EVENTS:,} events, {OPEN:,} open items, {ROUNDS} requests each, PostgreSQL, in-process (no network)\n")
    print("| page | p50 ms | p95 ms | p99 ms | SQL queries |")
    print("|---|---|---|---|---|")
    for name, p50, p95, p99, q in results:
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {q} |")
    if out:
        pages = [{"page": n, "p50": p50, "p95": p95, "p99": p99, "queries": q} for n, p50, p95, p99, q in results]
        Path(out).write_text(json.dumps({"events": EVENTS, "open": OPEN, "rounds": ROUNDS, "pages": pages}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
