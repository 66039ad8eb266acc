"""What the integration tests check again and again: posting NSL-KDD events over HTTP, waiting for
the workers, and the exactly-once invariants of scoring."""

from __future__ import annotations

import re
import time
from collections import Counter

import redis
import requests
from django.db.models import Count
from rest_framework.authtoken.models import Token

from models_registry.choices import ModelStatus
from models_registry.models import ModelVersion
from reviews.choices import EventStatus
from reviews.models import Event, Policy, ReviewItem
from tests.integration.conftest import Worker, wait_until

SCORE = "reviews.tasks.score_events"
SWEEP = "reviews.tasks.sweep_unscored_events"
TRAIN = "models_registry.tasks.train_model"
SCORED = (EventStatus.CLEARED, EventStatus.QUEUED)
_BATCH_STARTED = re.compile(
    r"reviews\.tasks\.score_events\[(?P<id>[0-9a-f-]+)\]: scoring a batch of \d+ events, ids (?P<first>\d+) to (?P<last>\d+)"
)


def http(user) -> requests.Session:
    session = requests.Session()
    token, _ = Token.objects.get_or_create(user=user)
    session.headers["Authorization"] = f"Token {token.key}"
    return session


def post_events(base_url: str, user, rows: list[dict]) -> list[int]:
    reply = http(user).post(f"{base_url}/api/v1/events/", json={"source": "nsl-kdd", "events": rows}, timeout=120)
    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert (body["accepted"], body["duplicates"]) == (len(rows), 0)
    assert {e["status"] for e in body["events"]} == {EventStatus.RECEIVED}
    return [e["id"] for e in body["events"]]


def status_counts(ids: list[int]) -> dict[str, int]:
    return dict(Counter(Event.objects.filter(id__in=ids).values_list("status", flat=True)))


def wait_all_scored(ids: list[int], workers: list[Worker], timeout: float = 90) -> None:
    wait_until(
        lambda: not Event.objects.filter(id__in=ids, status=EventStatus.RECEIVED).exists(),
        timeout=timeout,
        what=f"the worker to score {len(ids)} events",
        on_timeout=lambda: f"statuses: {status_counts(ids)}\n" + "\n".join(w.log_tail() for w in workers),
    )


def wait_task_runs(worker: Worker, task: str, count: int, timeout: float = 60) -> dict[str, str]:
    """The log line comes after the task's transaction committed, so this also waits for that."""
    return wait_until(
        lambda: len(worker.succeeded(task)) >= count and worker.succeeded(task),
        timeout=timeout,
        what=f"{count} successful runs of {task} on {worker.name}",
        on_timeout=worker.log_tail,
    )


def events_scored_by(worker: Worker) -> int:
    """Sum of what score_events returned on this worker: how many events its runs claimed and wrote."""
    return sum(int(result) for result in worker.succeeded(SCORE).values())


def champion_of(source) -> ModelVersion:
    return ModelVersion.objects.get(source=source, status=ModelStatus.CHAMPION)


def assert_scored_once_with_one_item_per_flagged_event(ids: list[int], champion: ModelVersion, policy: Policy) -> None:
    assert policy.audit_sample_rate == 0, "with audit sampling, items below the threshold would be expected too"
    events = Event.objects.filter(id__in=ids)
    assert events.count() == len(ids)
    assert status_counts(ids).keys() <= set(SCORED), status_counts(ids)
    assert not events.filter(score__isnull=True).exists()
    assert not events.filter(scored_at__isnull=True).exists()
    assert set(events.values_list("model_version_id", flat=True)) == {champion.id}
    flagged = events.filter(score__gte=policy.review_threshold)
    # Status, review item and score agree event by event, not only in total.
    assert set(flagged.values_list("id", flat=True)) == set(events.filter(status=EventStatus.QUEUED).values_list("id", flat=True))
    assert set(ReviewItem.objects.filter(event_id__in=ids).values_list("event_id", flat=True)) == set(
        flagged.values_list("id", flat=True)
    )
    assert ReviewItem.objects.filter(event_id__in=ids).count() == flagged.count()
    assert not ReviewItem.objects.filter(event_id__in=ids).values("event_id").annotate(n=Count("id")).filter(n__gt=1).exists()
    assert not events.filter(status=EventStatus.CLEARED, score__gte=policy.review_threshold).exists()


def batches_started(worker: Worker) -> dict[str, tuple[int, int]]:
    """task id -> (lowest, highest) event id, for every scoring batch the worker began to run."""
    return {m["id"]: (int(m["first"]), int(m["last"])) for m in _BATCH_STARTED.finditer(worker.log())}


def wait_drained(queue: redis.Redis, workers: list[Worker]) -> None:
    """Every scoring message handled: the queue empty, none unacknowledged, none running, twice."""

    def drained() -> bool:
        return (
            queue.llen("scoring") == 0
            and queue.hlen("unacked") == 0
            and all(set(w.received(SCORE)) == set(w.succeeded(SCORE)) for w in workers)
        )

    wait_until(
        lambda: drained() and (time.sleep(1) or drained()),
        timeout=90,
        what="every scoring message to be handled",
        on_timeout=lambda: "\n".join(w.log_tail() for w in workers),
    )
