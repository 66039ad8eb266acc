"""The real path end to end: events over HTTP into PostgreSQL, ids over Redis to a separate
`celery worker` process that scores and trains, and that process's failures (duplicate
deliveries, SIGKILL mid-batch) leaving every event scored exactly once."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import pytest
from django.db import connection, transaction

from models_registry.choices import ModelStatus
from models_registry.models import ModelVersion
from reviews.choices import EventStatus, LabelOrigin, ReviewState
from reviews.models import Event, Label, Policy, ReviewItem, Verdict
from tests.conftest import NSL_LIVE, nsl_events
from tests.integration.conftest import PROCESS_APPNAME, wait_until
from tests.integration.helpers import (
    SCORE,
    SCORED,
    SWEEP,
    TRAIN,
    assert_scored_once_with_one_item_per_flagged_event,
    batches_started,
    champion_of,
    events_scored_by,
    http,
    post_events,
    wait_all_scored,
    wait_task_runs,
)

# serialized_rollback: each test starts with what the migrations created (role groups and the
# like), which the flush after a transactional test removes.
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

# ------------------------------------------------------------------ 1. ingest and score


def test_posted_batch_is_scored_by_the_worker_process(live_server, trained_source, nsl_client, alice, secai_worker, settings):
    settings.SECAI_SCORE_BATCH = 250  # four messages for the worker's two pool processes
    champion = champion_of(trained_source)
    policy = Policy.objects.get(source=trained_source)
    worker = secai_worker(concurrency=2)
    rows = nsl_events(NSL_LIVE, 1000, prefix="live")

    ids = post_events(live_server.url, nsl_client, [r for r, _ in rows])

    wait_all_scored(ids, [worker])
    assert_scored_once_with_one_item_per_flagged_event(ids, champion, policy)
    runs = wait_task_runs(worker, SCORE, 4)
    assert len(runs) == 4
    assert events_scored_by(worker) == 1000, worker.succeeded(SCORE)

    # The scores come from the trained model: NSL-KDD attacks score higher than normal traffic,
    # and the review queue holds a real share of the batch, neither nothing nor everything.
    truth = {r["external_id"]: is_threat for r, is_threat in rows}
    scores = dict(Event.objects.filter(id__in=ids).values_list("external_id", "score"))
    threat_scores = [s for ext, s in scores.items() if truth[ext]]
    benign_scores = [s for ext, s in scores.items() if not truth[ext]]
    assert sum(threat_scores) / len(threat_scores) > sum(benign_scores) / len(benign_scores) + 0.3
    flagged = ReviewItem.objects.filter(event_id__in=ids).count()
    assert 100 < flagged < 1000
    for item in ReviewItem.objects.filter(event_id__in=ids).select_related("event"):
        assert item.state == ReviewState.OPEN
        assert item.score == item.event.score
        assert item.proposed_action == item.event.proposed_action == policy.action_for(item.score)
    # Explanations come from the explain queue after the batch commits, with the scoring model.
    wait_until(
        lambda: not Event.objects.filter(id__in=ids, review_item__isnull=False, explanation__isnull=True).exists(),
        timeout=120,
        what="every flagged event's explanation (the explain queue)",
    )
    for event in Event.objects.filter(id__in=ids, review_item__isnull=False):
        assert event.explanation and {"attribute", "contribution", "typical"} <= set(event.explanation[0])
        assert all(part["attribute"] in event.attributes for part in event.explanation)
    assert not Event.objects.filter(id__in=ids, review_item__isnull=True, explanation__isnull=False).exists()

    # What a REST client reads back for a flagged event.
    event = ReviewItem.objects.filter(event_id__in=ids).order_by("-priority").first().event
    reply = http(alice).get(f"{live_server.url}/api/v1/events/{event.id}/", timeout=30)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == EventStatus.QUEUED
    assert body["model_version"] == champion.version
    assert body["score"] == pytest.approx(event.score)
    assert body["review"] == {"id": event.review_item.id, "state": ReviewState.OPEN, "verdict": None}


# ------------------------------------------------------------------ 2. decide via the API


def test_reviewer_decisions_over_the_api_become_labels(
    live_server, trained_source, nsl_client, alice, bob, mallory, secai_worker
):
    worker = secai_worker(concurrency=1)
    rows = nsl_events(NSL_LIVE, 300, prefix="decide")
    ids = post_events(live_server.url, nsl_client, [r for r, _ in rows])
    wait_all_scored(ids, [worker])
    assert ReviewItem.objects.filter(event_id__in=ids).count() >= 2

    base = f"{live_server.url}/api/v1/review-items"
    assert http(mallory).post(f"{base}/claim-next/", timeout=30).status_code == 403

    reply = http(alice).post(f"{base}/claim-next/", timeout=30)
    assert reply.status_code == 200, reply.text
    first = reply.json()
    top = ReviewItem.objects.filter(event_id__in=ids).order_by("-priority", "created_at", "id").first()
    assert first["id"] == top.id, "claim-next hands out the highest-priority item"
    assert (first["state"], first["claimed_by"]) == (ReviewState.CLAIMED, "alice")

    # bob can neither take nor decide alice's claim.
    reply = http(bob).post(f"{base}/{first['id']}/decision/", json={"verdict": "overturn", "reason": "known_benign"}, timeout=30)
    assert reply.status_code == 409, reply.text
    reply = http(bob).post(f"{base}/claim-next/", timeout=30)
    assert reply.status_code == 200 and reply.json()["id"] != first["id"]
    second = reply.json()

    reply = http(alice).post(
        f"{base}/{first['id']}/decision/", json={"verdict": "approve", "reason": "confirmed_attack", "note": "scan"}, timeout=30
    )
    assert reply.status_code == 200, reply.text
    assert (reply.json()["verdict"], reply.json()["reviewer"]) == ("approve", "alice")
    label = Label.objects.get(event_id=first["event"]["id"])
    assert (label.is_threat, label.origin, label.verdict_id) == (True, LabelOrigin.VERDICT, reply.json()["id"])
    assert Event.objects.get(pk=first["event"]["id"]).status == EventStatus.DECIDED
    assert ReviewItem.objects.get(pk=first["id"]).state == ReviewState.DECIDED

    reply = http(bob).post(f"{base}/{second['id']}/decision/", json={"verdict": "overturn", "reason": "known_benign"}, timeout=30)
    assert reply.status_code == 200, reply.text
    label = Label.objects.get(event_id=second["event"]["id"])
    assert (label.is_threat, label.origin) == (False, LabelOrigin.VERDICT)

    # A second decision changes nothing.
    reply = http(alice).post(f"{base}/{first['id']}/decision/", json={"verdict": "overturn", "reason": "model_error"}, timeout=30)
    assert reply.status_code == 409, reply.text
    assert Label.objects.get(event_id=first["event"]["id"]).is_threat is True
    assert Verdict.objects.filter(item_id=first["id"]).count() == 1
    assert Label.objects.filter(origin=LabelOrigin.VERDICT).count() == 2


# ------------------------------------------------------------------ 3. retrain on the training queue


def test_admin_retrain_is_trained_and_validated_by_the_worker(
    live_server, trained_source, nsl_client, alice, carol, secai_worker, settings
):
    from reviews.services import verdict_submit

    old = champion_of(trained_source)
    worker = secai_worker(concurrency=1)
    ids = post_events(live_server.url, nsl_client, [r for r, _ in nsl_events(NSL_LIVE, 200, prefix="retrain")])
    wait_all_scored(ids, [worker])
    for item in ReviewItem.objects.filter(event_id__in=ids).order_by("-priority")[:3]:
        verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")

    url = f"{live_server.url}/api/v1/sources/nsl-kdd/retrain/"
    assert http(alice).post(url, timeout=30).status_code == 403
    reply = http(carol).post(url, timeout=30)
    assert reply.status_code == 202, reply.text
    run = reply.json()
    assert (run["status"], run["version"], run["triggered_by"]) == (ModelStatus.TRAINING, old.version + 1, "carol")

    finished = (ModelStatus.CHAMPION, ModelStatus.REJECTED, ModelStatus.FAILED)
    wait_until(
        lambda: ModelVersion.objects.filter(pk=run["id"], status__in=finished).exists(),
        timeout=120,
        what="the worker to finish the training run",
        on_timeout=worker.log_tail,
    )
    model = ModelVersion.objects.get(pk=run["id"])
    assert model.status in (ModelStatus.CHAMPION, ModelStatus.REJECTED), f"{model.status}: {model.error}"
    # The row is final before the task returns; the worker logs the return value just after.
    wait_until(
        lambda: worker.succeeded(TRAIN),
        timeout=30,
        what="the worker to log the training task's result",
        on_timeout=worker.log_tail,
    )
    assert list(worker.succeeded(TRAIN).values()) == [repr(str(model.status))]

    report = model.validation_report
    assert report["decision"] == ("promote" if model.status == ModelStatus.CHAMPION else "reject")
    assert report["champion_id"] == old.id, "the candidate was compared with the champion of the time"
    assert report["holdout_rows"] > 0 and report["candidate"]["pr_auc"] is not None and report["champion"]["pr_auc"] is not None
    assert report["reason"]
    assert model.metrics == report["candidate"]
    assert model.training_manifest["labels_by_origin"] == {LabelOrigin.IMPORT: 3000, LabelOrigin.VERDICT: 3}
    assert model.started_at and model.finished_at and model.finished_at >= model.started_at

    # The worker wrote the artifact into the model store this process uses, intact.
    path = Path(model.artifact_path)
    assert path.parent == Path(settings.MODEL_STORE) / "nsl-kdd"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == model.sha256

    old.refresh_from_db()
    champions = ModelVersion.objects.filter(source=trained_source, status=ModelStatus.CHAMPION)
    if model.status == ModelStatus.CHAMPION:
        assert old.status == ModelStatus.RETIRED
        assert list(champions) == [model]
    else:
        assert list(champions) == [old]


# ------------------------------------------------------------------ 4. duplicate delivery


def test_duplicate_deliveries_score_each_event_once(live_server, trained_source, nsl_client, secai_worker, settings):
    from reviews.tasks import score_events

    settings.SECAI_SCORE_BATCH = 500
    champion = champion_of(trained_source)
    policy = Policy.objects.get(source=trained_source)
    worker = secai_worker(concurrency=2)
    ids = post_events(live_server.url, nsl_client, [r for r, _ in nsl_events(NSL_LIVE, 1000, prefix="dup")])
    # Two more deliveries of every id, racing the two original messages on two pool processes.
    score_events.delay(ids)
    score_events.delay(ids)

    wait_all_scored(ids, [worker])
    wait_task_runs(worker, SCORE, 4)
    assert events_scored_by(worker) == 1000, f"some event was written by two deliveries: {worker.succeeded(SCORE)}"
    assert_scored_once_with_one_item_per_flagged_event(ids, champion, policy)
    before = {
        row[0]: row[1:]
        for row in Event.objects.filter(id__in=ids).values_list("id", "scored_at", "score", "model_version_id", "status")
    }
    items_before = set(ReviewItem.objects.filter(event_id__in=ids).values_list("id", "event_id", "created_at"))

    # Late duplicates, after everything is scored: they must find nothing to do.
    late = {score_events.delay(ids).id, score_events.delay(ids[:10]).id}
    runs = wait_task_runs(worker, SCORE, 6)
    assert {task_id: runs[task_id] for task_id in late} == dict.fromkeys(late, "0")
    after = {
        row[0]: row[1:]
        for row in Event.objects.filter(id__in=ids).values_list("id", "scored_at", "score", "model_version_id", "status")
    }
    assert after == before
    assert set(ReviewItem.objects.filter(event_id__in=ids).values_list("id", "event_id", "created_at")) == items_before


def _worker_sessions() -> set[tuple[int, object]]:
    """(pid, backend start) of the database sessions that processes started by the fixtures hold."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            [PROCESS_APPNAME],
        )
        return set(cursor.fetchall())


def test_worker_keeps_its_database_session_across_tasks_and_replaces_a_dead_one(
    live_server, trained_source, nsl_client, secai_worker, settings
):
    """A pool process scores batch after batch on one database session (reconnecting per task
    cost a twentieth of a batch); when that session dies between tasks, the next task notices
    before its first query and scores on a new one, without a failed try."""
    settings.SECAI_SCORE_BATCH = 100
    worker = secai_worker(concurrency=1, queues="scoring")
    rows = [r for r, _ in nsl_events(NSL_LIVE, 700, prefix="conn")]
    first = post_events(live_server.url, nsl_client, rows[:100])
    wait_all_scored(first, [worker])
    wait_task_runs(worker, SCORE, 1)
    before = _worker_sessions()
    assert len(before) == 1, before  # the pool process's one session, kept after its task

    more = post_events(live_server.url, nsl_client, rows[100:400])
    wait_all_scored(more, [worker])
    wait_task_runs(worker, SCORE, 4)
    assert _worker_sessions() == before, "the worker opened a new session for a later task"

    # The session dies while the worker is idle (a restart, a failover, an idle timeout).
    ((pid, _),) = before
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_until(lambda: pid not in {p for p, _ in _worker_sessions()}, timeout=10, what="the session to end")
    last = post_events(live_server.url, nsl_client, rows[400:])
    wait_all_scored(last, [worker], timeout=30)
    wait_task_runs(worker, SCORE, 7)
    assert events_scored_by(worker) == 700
    assert "Retry in" not in worker.log(), worker.log_tail()
    after = _worker_sessions()
    assert len(after) == 1 and after != before


# ------------------------------------------------------------------ 5. SIGKILL mid-batch


def test_worker_killed_mid_batch_leaves_every_event_scored_exactly_once(
    live_server, trained_source, nsl_client, secai_worker, redis_broker, settings
):
    from reviews.tasks import sweep_unscored_events

    settings.SECAI_SCORE_BATCH = 250
    total = 3000
    champion = champion_of(trained_source)
    policy = Policy.objects.get(source=trained_source)
    first = secai_worker(concurrency=2)
    ids = post_events(live_server.url, nsl_client, [r for r, _ in nsl_events(NSL_LIVE, total, prefix="kill")])

    # Kill the whole worker (main process and pool children) while a batch is inside its write
    # transaction: once one batch is written (the model is loaded), this test holds back
    # review-item inserts with a table lock, so the next batch that flags an event waits with its
    # scores updated but not committed. The kill lands there, and wherever the other pool
    # process and the prefetched messages happen to be.
    wait_until(lambda: first.succeeded(SCORE), timeout=60, interval=0.05, what="a first written batch", on_timeout=first.log_tail)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {ReviewItem._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")
        _wait_for_a_blocked_batch(first)
        first.kill()
    # The lock is released: the killed worker's sessions find their client gone and roll back.
    wait_until(lambda: _backends_waiting_for_a_lock() == 0, timeout=30, what="the killed sessions to end")
    done = first.succeeded(SCORE)
    killed = {task: span for task, span in batches_started(first).items() if task not in done}
    assert killed, f"no batch was running when the worker died\n{first.log_tail()}"

    # Only what committed before the kill is in the database; the killed processes' open
    # transactions can never commit, so a batch is written whole or not at all.
    scored_before = dict(Event.objects.filter(id__in=ids, status__in=SCORED).values_list("id", "scored_at"))
    assert 0 < len(scored_before) < total, f"the kill did not land mid-batch ({len(scored_before)} of {total} scored)"
    killed_ids = {task: [i for i in ids if low <= i <= high] for task, (low, high) in killed.items()}
    for task, batch in killed_ids.items():
        written = sum(i in scored_before for i in batch)
        assert written in (0, len(batch)), f"batch {task} was half written: {written} of {len(batch)}"
    cut_short = [i for batch in killed_ids.values() for i in batch if i not in scored_before]
    assert cut_short, "the batch blocked in its write transaction was committed"
    in_flight = set(first.received(SCORE)) - set(first.succeeded(SCORE))
    assert in_flight >= set(killed)
    # The in-flight messages sit unacknowledged in Redis until the visibility timeout (an hour):
    # only the sweeper brings their events back.
    stuck = redis_broker.hlen("unacked")
    assert stuck >= 1
    assert events_scored_by(first) <= len(scored_before)

    second = secai_worker(concurrency=2)
    sweep = sweep_unscored_events.delay()
    wait_all_scored(ids, [first, second], timeout=120)
    sweep_runs = wait_task_runs(second, SWEEP, 1)
    # Nothing but the sweeper can bring back the events of the messages lost in flight (less any
    # that a killed run committed in the instant before it could log its success).
    committed_unlogged = len(scored_before) - events_scored_by(first)
    assert int(sweep_runs[sweep.id]) >= 250 * len(in_flight) - committed_unlogged, sweep_runs

    # Let second drain every message (those queued at the kill, and the sweep's duplicates of
    # them) before counting what it wrote; a drained state has to hold on two polls in a row.
    def drained() -> bool:
        return (
            redis_broker.llen("scoring") == 0
            and redis_broker.hlen("unacked") == stuck
            and set(second.received(SCORE)) == set(second.succeeded(SCORE))
        )

    wait_until(
        lambda: drained() and (time.sleep(0.5) or drained()),
        timeout=60,
        what="the scoring queue to drain",
        on_timeout=second.log_tail,
    )

    assert_scored_once_with_one_item_per_flagged_event(ids, champion, policy)
    # What was scored before the kill was not scored again, and the new worker wrote exactly the
    # rest: each of its runs reports how many events it claimed.
    assert dict(Event.objects.filter(id__in=list(scored_before)).values_list("id", "scored_at")) == scored_before
    assert events_scored_by(second) == total - len(scored_before), second.succeeded(SCORE)
    # The batch the kill cut short was scored by the second worker, once.
    assert not Event.objects.filter(id__in=cut_short, status=EventStatus.RECEIVED).exists()
    assert (
        ReviewItem.objects.filter(event_id__in=cut_short).count()
        == Event.objects.filter(id__in=cut_short, status=EventStatus.QUEUED).count()
    )


def test_pool_process_killed_mid_task_gets_its_message_redelivered(
    live_server, trained_source, nsl_client, secai_worker, settings
):
    """acks_late + reject_on_worker_lost: when only the pool process running a task dies, the main
    process puts the message back on the queue and the task runs again, with no sweeper."""
    settings.SECAI_SCORE_BATCH = 1000
    champion = champion_of(trained_source)
    policy = Policy.objects.get(source=trained_source)
    ids = post_events(live_server.url, nsl_client, [r for r, _ in nsl_events(NSL_LIVE, 2000, prefix="child")])
    # Review-item inserts are held back by a table lock before the worker starts, so its first task
    # (the batch flags some of its 1,000 events) waits inside its write transaction, and the kill
    # lands inside the task however fast the machine scores.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {ReviewItem._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")
        worker = secai_worker(concurrency=1)
        victim = wait_until(
            lambda: worker.received(SCORE), timeout=30, interval=0.02, what="the first scoring task", on_timeout=worker.log_tail
        )[0]
        _wait_for_a_blocked_batch(worker)
        (child,) = worker.pool_pids()
        os.kill(child, signal.SIGKILL)
        assert victim not in worker.succeeded(SCORE), "the kill came after the task had finished"
    # The lock is released: the killed process's session finds its client gone and rolls back.

    wait_all_scored(ids, [worker])
    runs = wait_task_runs(worker, SCORE, 2)
    assert victim in runs, f"the killed task was not run again\n{worker.log_tail()}"
    assert worker.received(SCORE).count(victim) == 2, "the message was delivered again after the pool process died"
    assert "WorkerLostError" in worker.log()
    assert worker.proc.poll() is None, "the worker itself survived and replaced its pool process"
    assert events_scored_by(worker) == 2000, runs
    assert not worker.succeeded(SWEEP)
    assert_scored_once_with_one_item_per_flagged_event(ids, champion, policy)


def _wait_for_a_blocked_batch(worker) -> None:
    """Until a scoring batch of the worker's waits on a lock inside its write transaction."""
    wait_until(
        lambda: _backends_waiting_for_a_lock() > 0,
        timeout=60,
        interval=0.05,
        what="a scoring batch blocked inside its write transaction",
        on_timeout=worker.log_tail,
    )


def _backends_waiting_for_a_lock() -> int:
    with connection.cursor() as cursor:
        # Inside a transaction PostgreSQL serves pg_stat_activity from a snapshot taken at its first
        # read; without clearing it, a caller polling from inside its own transaction (as the
        # tests do while they hold a lock) would see the first answer forever.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'", [PROCESS_APPNAME]
        )
        return cursor.fetchone()[0]
