"""Scale-out: the Procfile's processes (gunicorn with two workers, two scoring workers, one beat)
sharing one Redis and one PostgreSQL database. However the batches are split between the
workers, and however often an id is delivered, every event is scored exactly once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from reviews.models import Policy
from tests.conftest import NSL_LIVE, nsl_events
from tests.integration.conftest import procfile_command
from tests.integration.helpers import (
    SCORE,
    assert_scored_once_with_one_item_per_flagged_event,
    champion_of,
    events_scored_by,
    http,
    wait_all_scored,
    wait_drained,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def chunks(ids: list[int], size: int) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def test_two_workers_on_one_redis_score_every_event_exactly_once(
    trained_source, nsl_client, secai_worker, web_server, beat, redis_broker
):
    from reviews.tasks import score_events

    total, per_post, batch = 3000, 500, 100
    champion = champion_of(trained_source)
    policy = Policy.objects.get(source=trained_source)
    web, url = web_server(env={"SECAI_SCORE_BATCH": str(batch)})
    scoring = procfile_command("scoring", {"SCORING_CONCURRENCY": "1"})
    workers = [secai_worker(command=scoring), secai_worker(command=scoring)]
    beat()  # the sweeper, every 2 s, sends whatever is still 'received' again: more duplicates

    rows = [r for r, _ in nsl_events(NSL_LIVE, total, prefix="scale")]
    posts = chunks(rows, per_post)
    sessions = [http(nsl_client) for _ in posts]  # tokens read here: the threads only speak HTTP

    def post(i: int) -> requests.Response:
        return sessions[i].post(f"{url}/api/v1/events/", json={"source": "nsl-kdd", "events": posts[i]}, timeout=120)

    # Two clients at once, so both gunicorn workers ingest while both celery workers score.
    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(post, range(len(posts))))
    assert [r.status_code for r in replies] == [202] * len(posts), [r.text[:200] for r in replies if r.status_code != 202]
    ids = [e["id"] for r in replies for e in r.json()["events"]]
    assert len(set(ids)) == total

    # Every id twice more, cut differently from the web's batches and in the other order, racing
    # the first deliveries on the other worker.
    duplicates = chunks(ids, 300) + chunks(ids[::-1], 700)
    for chunk in duplicates:
        score_events.delay(chunk)
    # A client that re-posts a batch (it timed out, say) gets duplicates and enqueues nothing.
    again = post(0)
    assert again.status_code == 202 and (again.json()["accepted"], again.json()["duplicates"]) == (0, per_post)

    wait_all_scored(ids, workers, timeout=180)

    wait_drained(redis_broker, workers)
    runs = [result for w in workers for result in w.succeeded(SCORE).values()]
    assert len(runs) >= total // batch + len(duplicates), "the web's messages and the duplicates all ran"
    per_worker = [events_scored_by(w) for w in workers]
    assert all(n > 0 for n in per_worker), f"both workers scored: {per_worker}"
    assert sum(per_worker) == total, f"some event was written twice (or never): {per_worker}"
    assert_scored_once_with_one_item_per_flagged_event(ids, champion, policy)
    assert web.proc.poll() is None and all(w.proc.poll() is None for w in workers)
