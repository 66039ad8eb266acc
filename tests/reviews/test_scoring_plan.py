"""The scoring batch's two statements find their rows by primary key however stale the planner's
statistics are. Each scored event leaves an entry under 'received' in the status indexes until
vacuum clears it; a plan that read those indexes read every page they pointed to, and a batch
slowed down as the table grew."""

import json
from datetime import UTC, datetime

import pytest
from django.db import connection

from reviews import services
from reviews.choices import EventStatus
from reviews.models import Event
from tests.factories import SourceFactory

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("query plans are PostgreSQL's (make test runs this with SECAI_TEST_DB=postgres)")


def _events(source, tag: str, n: int, status: str) -> list[int]:
    when = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [
        Event(
            source=source,
            external_id=f"{tag}-{i}",
            entity=f"user-{i % 50}",
            occurred_at=when,
            received_at=when,
            attributes={"bytes": i, "proto": "tcp", "admin": False, "note": "x" * 200},
            status=status,
        )
        for i in range(n)
    ]
    return [e.pk for e in Event.objects.bulk_create(rows, batch_size=1000)]


def _indexes_read(sql: str, params: list) -> set[str]:
    with services._bound_cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    plan = plan if isinstance(plan, list) else json.loads(plan)
    found: set[str] = set()

    def walk(node: dict) -> None:
        if "Index Name" in node:
            found.add(node["Index Name"])
        if node.get("Node Type", "").startswith("Seq Scan") and node.get("Relation Name") == Event._meta.db_table:
            found.add("<sequential scan of events>")
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


@pytest.fixture
def stale_table():
    """Statistics taken when no event waited; since then 6,000 events were received and scored
    (dead 'received' entries in the status indexes) and 1,000 more wait: the batch."""
    source = SourceFactory()
    _events(source, "old", 3000, EventStatus.CLEARED)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Event._meta.db_table}")
    scored = _events(source, "scored", 6000, EventStatus.RECEIVED)
    Event.objects.filter(pk__in=scored).update(status=EventStatus.CLEARED)
    return _events(source, "batch", 1000, EventStatus.RECEIVED)


def _status_indexes() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s",
            [Event._meta.db_table, "%status%"],
        )
        names = {row[0] for row in cursor.fetchall()}
    assert names, "the events table has no index on status: this test would prove nothing"
    return names


def test_pending_rows_are_read_by_primary_key(stale_table):
    read = _indexes_read(services.PENDING_SQL, [stale_table, EventStatus.RECEIVED.value])
    assert read == {f"{Event._meta.db_table}_pkey"}


def test_score_write_reads_no_status_index(stale_table):
    """On this small table a hash join over one scan is as good as the primary key; what must
    never appear is a status index."""
    n = len(stale_table)
    params = [None, datetime.now(UTC), stale_table, [0.5] * n, ["cleared"] * n, ["allow"] * n, EventStatus.RECEIVED.value]
    read = _indexes_read(services.WRITE_SCORES_SQL, params)
    assert read and not read & _status_indexes(), read


def test_the_written_statements_still_compare_and_set(stale_table):
    """The unindexable status test means the same as status = 'received': scoring the batch
    twice writes each event once, and events already scored are not touched."""
    from django.utils import timezone

    ids = stale_table[:10]
    rows = [(pk, 0.9, EventStatus.QUEUED, "deny") for pk in ids]
    first = services._events_write_scores(rows, model_version_id=None, scored_at=timezone.now())
    second = services._events_write_scores(rows, model_version_id=None, scored_at=timezone.now())
    assert first == set(ids)
    assert second == set()
    assert services._events_pending(stale_table[:20]) == services._events_pending(stale_table[10:20])
    assert [r["id"] for r in services._events_pending(stale_table[:20])] == stale_table[10:20]
