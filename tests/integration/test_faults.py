"""Faults with real processes and real servers: the broker stopped while events are posted,
PostgreSQL restarted under load, a model file damaged on disk, a training run requested while
the broker is down. Nothing accepted is lost, nothing is scored twice, and no process needs a
restart to recover. The servers that are stopped here are private ones started by the test."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg
import pytest
import redis
import requests
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from models_registry.models import ModelVersion
from reviews.choices import EventStatus
from reviews.models import AuditEntry, Event, Policy
from tests.conftest import NSL_LIVE, nsl_events
from tests.integration.conftest import Process, celery_broker, database_url, wait_until
from tests.integration.helpers import (
    SWEEP,
    assert_scored_once_with_one_item_per_flagged_event,
    champion_of,
    events_scored_by,
    http,
    post_events,
    wait_all_scored,
    wait_drained,
)
from tests.models_registry.helpers import damage, second_champion

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


class Client(threading.Thread):
    """A REST client posting batches one after another, as an event source would; on a 503 or a
    refused connection it waits and posts the same batch again (re-posting is safe: stored
    events come back as duplicates)."""

    def __init__(self, url: str, sessions: list[requests.Session], batches: list[list[dict]], *, pause: float = 0.1):
        super().__init__(daemon=True)
        self.url, self.sessions, self.batches, self.pause = url, sessions, batches, pause
        self.replies: list[requests.Response | None] = [None] * len(batches)
        self.answers: list[int | str] = []  # every status code, or the connection error's name
        self.error: BaseException | None = None

    @property
    def done(self) -> int:
        return sum(r is not None for r in self.replies)

    def run(self) -> None:
        try:
            for i, batch in enumerate(self.batches):
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    try:
                        reply = self.sessions[i].post(
                            f"{self.url}/api/v1/events/", json={"source": "nsl-kdd", "events": batch}, timeout=60
                        )
                    except requests.ConnectionError as exc:
                        self.answers.append(type(exc).__name__)
                        time.sleep(0.3)
                        continue
                    self.answers.append(reply.status_code)
                    if reply.status_code == 503:
                        assert reply.headers.get("Retry-After"), reply.headers
                        assert reply.json()["errors"][0]["message"].startswith("the database is unavailable"), reply.text
                        time.sleep(0.3)
                        continue
                    self.replies[i] = reply
                    break
                else:
                    raise AssertionError(f"batch {i} was never accepted: {self.answers[-5:]}")
                time.sleep(self.pause)
        except BaseException as exc:  # re-raised in the test's thread
            self.error = exc

    def finish(self, timeout: float) -> list[requests.Response]:
        self.join(timeout)
        assert not self.is_alive(), f"the client is still posting after {timeout:.0f}s ({self.done} of {len(self.batches)})"
        if self.error:
            raise self.error
        return [r for r in self.replies if r is not None]


def client_for(url: str, user, rows: list[dict], per_post: int) -> Client:
    batches = [rows[i : i + per_post] for i in range(0, len(rows), per_post)]
    return Client(url, [http(user) for _ in batches], batches)  # tokens read here: the thread only speaks HTTP


def assert_still_running(*processes: Process, children: dict[str, list[int]]) -> None:
    """Same processes, same forked children (pool processes, gunicorn workers) as before the fault."""
    for process in processes:
        assert process.proc.poll() is None, f"{process.name} exited\n{process.log_tail()}"
        assert process.children() == children[process.name], f"{process.name} replaced a child\n{process.log_tail()}"


# ------------------------------------------------------------------ the broker stops


def test_redis_stopped_while_events_are_posted(trained_source, nsl_client, private_redis, secai_worker, web_server, beat):
    per_post, posts = 100, 24
    total = per_post * posts
    champion = champion_of(trained_source)
    policy = Policy.objects.get(source=trained_source)
    web, url = web_server(broker_url=private_redis.url, env={"SECAI_SCORE_BATCH": str(per_post)})
    worker = secai_worker(concurrency=1, broker_url=private_redis.url)
    sweeper = beat(broker_url=private_redis.url)
    children = {p.name: p.children() for p in (web, worker, sweeper)}

    client = client_for(url, nsl_client, [r for r, _ in nsl_events(NSL_LIVE, total, prefix="outage")], per_post)
    client.start()
    wait_until(lambda: client.done >= 6, timeout=120, what="six batches before the outage")
    private_redis.stop()  # messages in it are lost with it: no persistence
    first_after_stop = client.done + 1  # the batch in flight at the stop may have been enqueued
    wait_until(lambda: client.done >= first_after_stop + 8, timeout=120, what="eight batches during the outage")
    during = [e["id"] for r in client.replies[first_after_stop : first_after_stop + 8] for e in r.json()["events"]]
    assert len(during) == 8 * per_post
    # Accepted and stored, waiting: nothing can reach the worker, the sweeper's beat cannot send.
    assert Event.objects.filter(id__in=during, status=EventStatus.RECEIVED).count() == len(during)
    assert "could not enqueue" in web.log()
    private_redis.start()  # empty: the sweeper has to find what the lost messages carried

    replies = client.finish(timeout=180)
    assert set(client.answers) == {202}, "ingestion accepted every batch, outage or not"
    assert [(r.json()["accepted"], r.json()["duplicates"]) for r in replies] == [(per_post, 0)] * posts
    ids = [e["id"] for r in replies for e in r.json()["events"]]
    wait_all_scored(ids, [worker], timeout=180)
    wait_drained(redis.Redis.from_url(private_redis.url), [worker])

    assert events_scored_by(worker) == total, "some event was scored twice, or not by this worker"
    assert_scored_once_with_one_item_per_flagged_event(ids, champion, policy)
    assert max(int(n) for n in worker.succeeded(SWEEP).values()) > 0, "the sweeper re-enqueued the stranded events"
    assert_still_running(web, worker, sweeper, children=children)


# ------------------------------------------------------------------ PostgreSQL restarts


def test_postgres_restarted_under_load(
    trained_source, nsl_client, private_postgres, secai_worker, web_server, beat, redis_broker
):
    per_post, posts = 100, 24
    total = per_post * posts
    policy = Policy.objects.get(source=trained_source)
    rows = [r for r, _ in nsl_events(NSL_LIVE, total, prefix="pg")]
    session = http(nsl_client)  # the client's token, before the copy below
    # The private cluster starts as a copy of this test's database: the source, its champion,
    # the client's token. Web, worker and beat use it; this process reads it with psycopg.
    db = private_postgres.copy_of(database_url(connection.settings_dict), "secai")
    web, url = web_server(database=db, env={"SECAI_SCORE_BATCH": str(per_post)})
    worker = secai_worker(concurrency=2, database=db)
    sweeper = beat(database=db)
    children = {p.name: p.children() for p in (web, worker, sweeper)}

    client = client_for(url, nsl_client, rows, per_post)
    client.start()
    wait_until(lambda: client.done >= 5, timeout=120, what="five batches before the restart")
    private_postgres.restart()  # a fast shutdown terminates every session, mid-transaction or not
    wait_until(lambda: client.done >= 10, timeout=120, what="five batches after the restart")

    # Down for a while: the web answers 503 with Retry-After, not a 500, and not ready.
    private_postgres.stop()
    reply = session.post(f"{url}/api/v1/events/", json={"source": "nsl-kdd", "events": client.batches[-1]}, timeout=60)
    assert reply.status_code == 503 and reply.headers["Retry-After"], reply.text
    assert reply.json() == {"errors": [{"field": "non_field_errors", "message": "the database is unavailable; retry shortly"}]}
    assert requests.get(f"{url}/readyz", timeout=30).status_code == 503
    time.sleep(2)
    private_postgres.start()

    replies = client.finish(timeout=240)
    assert 500 not in client.answers and set(client.answers) <= {202, 503, "ConnectionError"}, client.answers
    assert 503 in client.answers, "the client met the outage"
    # A batch whose first attempt committed just as the server went down comes back as duplicates.
    assert sum(r.json()["accepted"] + r.json()["duplicates"] for r in replies) == total
    external = {e["external_id"]: e["id"] for r in replies for e in r.json()["events"]}
    assert len(external) == total

    with psycopg.connect(db, autocommit=True) as conn:

        def unscored() -> int:
            return conn.execute("SELECT count(*) FROM reviews_event WHERE status = 'received'").fetchone()[0]

        wait_until(lambda: unscored() == 0, timeout=180, what="every event to be scored", on_timeout=worker.log_tail)
        wait_drained(redis_broker, [worker])
        rows = conn.execute(
            """SELECT e.external_id, e.id, e.status, e.score, ri.id FROM reviews_event e
               LEFT JOIN reviews_reviewitem ri ON ri.event_id = e.id WHERE e.external_id LIKE 'pg-%%'"""
        ).fetchall()
    assert {ext: pk for ext, pk, *_ in rows} == external, "every accepted event is stored once, under the id it was given"
    assert {status for _, _, status, _, _ in rows} <= {EventStatus.CLEARED, EventStatus.QUEUED}
    for ext, _, status, score, item in rows:
        flagged = score >= policy.review_threshold
        assert (status == EventStatus.QUEUED) == flagged == (item is not None), (ext, status, score, item)
    assert events_scored_by(worker) == total, "some event was scored twice"
    assert_still_running(web, worker, sweeper, children=children)


# ------------------------------------------------------------------ a damaged model file


def test_workers_refuse_a_damaged_champion_and_score_with_the_last_good(
    live_server, trained_source, nsl_client, carol, alice, secai_worker, client
):
    policy = Policy.objects.get(source=trained_source)
    v1 = champion_of(trained_source)
    v2 = second_champion(trained_source, carol)
    damage(v2)  # on disk, after promotion: the next process to load it finds out

    first = secai_worker(concurrency=1)
    ids = post_events(live_server.url, nsl_client, [r for r, _ in nsl_events(NSL_LIVE, 300, prefix="damaged")])
    wait_all_scored(ids, [first])
    assert_scored_once_with_one_item_per_flagged_event(ids, v1, policy)
    assert f"champion model {v2.pk} refused: sha256 mismatch" in first.log()

    # A second worker, started later, refuses it too; the alert is recorded once.
    second = secai_worker(concurrency=1)
    first.stop()
    more = post_events(live_server.url, nsl_client, [r for r, _ in nsl_events(NSL_LIVE, 400, prefix="damaged")][300:])
    wait_all_scored(more, [second])
    assert_scored_once_with_one_item_per_flagged_event(more, v1, policy)
    assert events_scored_by(first) + events_scored_by(second) == 400

    (entry,) = AuditEntry.objects.filter(verb="model.integrity_failed")
    assert (entry.object_id, entry.actor_label, entry.after["scoring_with"]) == (str(v2.pk), "system:integrity", "v1")
    v2.refresh_from_db()
    assert v2.status == "champion" and "sha256 mismatch" in v2.integrity_error
    client.force_login(carol)
    assert "champion v2 failed its integrity check" in client.get(reverse("reviews:dashboard")).content.decode()
    client.force_login(alice)
    assert client.get(reverse("reviews:dashboard")).status_code == 403


# ------------------------------------------------------------------ training while the broker is down


def test_retrain_requested_while_the_broker_is_down_runs_once_it_is_back(trained_source, carol, private_redis, api, secai_worker):
    from models_registry.tasks import reap_stale_training

    private_redis.stop()
    with celery_broker(private_redis.url):
        reply = api(carol).post("/api/v1/sources/nsl-kdd/retrain/")
        assert reply.status_code == 202, reply.content
        run = ModelVersion.objects.get(pk=reply.json()["id"])
        assert (run.status, run.started_at) == ("training", None)

        private_redis.start()
        worker = secai_worker(concurrency=1, queues="training", broker_url=private_redis.url)
        # The reaper (beat, every two minutes) sends runs that waited longer than that again.
        ModelVersion.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=3))
        reap_stale_training()
        wait_until(
            lambda: ModelVersion.objects.filter(pk=run.pk, status__in=["champion", "rejected"]).exists(),
            timeout=120,
            what="the worker to train the run",
            on_timeout=worker.log_tail,
        )
    # A second resend finds it started and does nothing.
    with celery_broker(private_redis.url):
        reap_stale_training()
    run.refresh_from_db()
    assert run.finished_at is not None
    assert ModelVersion.objects.filter(source=trained_source).count() == 2
