"""manage.py archive_events: what is exported, what is deleted, and what is never touched."""

import gzip
import json
import os
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from reviews import services
from reviews.models import AuditEntry, Event, Label, ReviewItem, Verdict
from tests.factories import EventFactory, ReviewItemFactory, SourceFactory

pytestmark = pytest.mark.django_db

OLD = timezone.now() - timedelta(days=10)
CUTOFF = (timezone.now() - timedelta(days=5)).date().isoformat()


def aged(*events):
    Event.objects.filter(pk__in=[e.pk for e in events]).update(received_at=OLD)


def archive(**options) -> str:
    out = StringIO()
    call_command("archive_events", stdout=out, **options)
    return out.getvalue()


def read(path) -> list[dict]:
    with gzip.open(path, "rt") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture
def history(alice):
    """Old events in every state, one new one, and a decided item with its verdict and label."""
    source = SourceFactory(name="vpn")
    cleared = EventFactory.create_batch(3, source=source, status="cleared", score=0.1, proposed_action="allow")
    decided_item = ReviewItemFactory(
        event__source=source, event__attributes={"bytes": 7, "proto": "udp", "admin": True, "note": "<b>x</b>"}
    )
    services.verdict_submit(item=decided_item, reviewer=alice, verdict="approve", reason="confirmed_attack", note="seen before")
    waiting = ReviewItemFactory(event__source=source)  # queued: a reviewer has still to decide
    unscored = EventFactory(source=source, status="received", score=None)
    recent = EventFactory(source=source, status="cleared", score=0.2)
    aged(*cleared, decided_item.event, waiting.event, unscored)
    return {
        "source": source,
        "cleared": cleared,
        "decided": decided_item,
        "waiting": waiting,
        "unscored": unscored,
        "recent": recent,
    }


def test_done_events_are_written_then_deleted_with_their_items_verdicts_and_labels(history, tmp_path):
    path = tmp_path / "vpn-2026.jsonl.gz"
    printed = archive(before=CUTOFF, out=str(path))

    decided = history["decided"]
    archived = {e.pk for e in history["cleared"]} | {decided.event_id}
    records = read(path)
    assert sorted(r["id"] for r in records) == sorted(archived)
    record = next(r for r in records if r["id"] == decided.event_id)
    assert record["attributes"] == {"bytes": 7, "proto": "udp", "admin": True, "note": "<b>x</b>"}
    assert (record["source"], record["status"], record["label"]) == (
        "vpn",
        "decided",
        {"is_threat": True, "origin": "verdict", "weight": 1.0},
    )
    assert record["review"]["state"] == "decided"
    assert [(v["reviewer"], v["verdict"], v["reason"], v["note"]) for v in record["review"]["verdicts"]] == [
        ("alice", "approve", "confirmed_attack", "seen before")
    ]

    assert not Event.objects.filter(pk__in=archived).exists()
    assert not ReviewItem.objects.filter(pk=decided.pk).exists()
    assert not Verdict.objects.exists() and not Label.objects.exists()
    kept = {history["waiting"].event_id, history["unscored"].pk, history["recent"].pk}
    assert set(Event.objects.values_list("pk", flat=True)) == kept
    assert ReviewItem.objects.filter(pk=history["waiting"].pk, state="open").exists()
    (entry,) = AuditEntry.objects.filter(verb="events.archive")
    assert entry.actor_label == "system:archive" and entry.after["events"] == 4 and entry.after["file"] == str(path)
    assert "archived 4 events (vpn: 4)" in printed and "1 review items, 1 labels" in printed


def test_chunks_are_separate_gzip_members_of_one_readable_file(history, tmp_path):
    path = tmp_path / "a.jsonl.gz"
    archive(before=CUTOFF, out=str(path), batch_size=1)
    assert len(read(path)) == 4
    assert AuditEntry.objects.filter(verb="events.archive").count() == 4


def test_plain_json_lines_without_gz(history, tmp_path):
    path = tmp_path / "a.jsonl"
    archive(before=CUTOFF, out=str(path), status="cleared")
    assert len(path.read_text().splitlines()) == 3
    assert Event.objects.filter(status="decided").count() == 1


def test_dry_run_counts_and_changes_nothing(history, tmp_path):
    path = tmp_path / "never.jsonl.gz"
    printed = archive(before=CUTOFF, out=str(path), dry_run=True)
    assert "would archive 4 events (vpn: 4)" in printed
    assert not path.exists() and Event.objects.count() == 7


@pytest.mark.parametrize(
    "options, message",
    [
        ({"before": "yesterday"}, "is not a date"),
        ({"before": "2020-01-01T00:00:00"}, "with an offset"),
        ({"before": timezone.now().date().isoformat()}, "at least a day ago"),
        ({"before": CUTOFF, "status": "queued"}, "only events in cleared, decided, historical"),
        ({"before": CUTOFF, "source": "nope"}, "unknown source"),
    ],
)
def test_refusals(history, tmp_path, options, message):
    with pytest.raises(CommandError, match=message):
        archive(out=str(tmp_path / "x.jsonl.gz"), **options)
    assert Event.objects.count() == 7


def test_an_existing_archive_is_never_overwritten(history, tmp_path):
    path = tmp_path / "old.jsonl.gz"
    path.write_bytes(b"earlier archive")
    with pytest.raises(CommandError, match="never overwritten"):
        archive(before=CUTOFF, out=str(path))
    assert path.read_bytes() == b"earlier archive" and Event.objects.count() == 7


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_write_that_fails_deletes_nothing(history):
    with pytest.raises(CommandError, match="could not write /dev/full"):
        archive(before=CUTOFF, out="/dev/full")
    assert Event.objects.count() == 7 and Label.objects.count() == 1
    assert not AuditEntry.objects.filter(verb="events.archive").exists()
