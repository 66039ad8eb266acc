"""Actions reaching the outside world through a real `celery worker` process on the `actions`
queue (Redis broker, PostgreSQL), against a webhook receiver on 127.0.0.1 started by the test:
SIGKILL of the worker mid-delivery, replayed deliveries, retries with backoff and reversals, and
never a side effect applied twice for one idempotency key."""

from __future__ import annotations

import pytest

from actions import services
from actions.models import ActionType, Delivery
from actions.tasks import deliver
from reviews import services as review_services
from reviews.models import ReviewItem, Verdict
from tests.actions.receiver import Receiver, webhook_for
from tests.conftest import NSL_LIVE, nsl_events
from tests.factories import EventFactory, ReviewItemFactory, SourceFactory
from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SECRET = "integration-secret-0123456789"
DELIVER = "actions.tasks.deliver"
# Short lease and backoff so a dead worker's delivery is taken over, and retries come, within seconds.
FAST = {"SECAI_DELIVERY_LEASE_SECONDS": "3", "SECAI_DELIVERY_BACKOFF_SECONDS": "0.5"}


@pytest.fixture
def receiver():
    r = Receiver(secret=SECRET).start()
    yield r
    r.stop()


@pytest.fixture
def deny_source(receiver):
    source = SourceFactory(name="idp")
    services.action_types_seed(source=source)
    webhook_for(source, receiver, max_attempts=5, timeout_seconds=20)
    return source


def approve_items(source, reviewer, n: int) -> list:
    items = []
    for i in range(n):
        item = ReviewItemFactory(event=EventFactory(source=source, entity=f"user-{i}", proposed_action="deny"))
        # Each verdict commits on its own; the delivery is enqueued after that commit.
        review_services.verdict_submit(item=item, reviewer=reviewer, verdict="approve", reason="confirmed_attack")
        items.append(item)
    return items


def states(ids) -> dict[str, int]:
    out: dict[str, int] = {}
    for state in Delivery.objects.filter(pk__in=ids).values_list("state", flat=True):
        out[state] = out.get(state, 0) + 1
    return out


def test_sigkill_mid_delivery_then_replay_applies_each_action_once(deny_source, receiver, alice, secai_worker, settings):
    settings.SECAI_DELIVERY_LEASE_SECONDS = 3  # the test process's sweeper judges leases like the workers
    settings.SECAI_SWEEP_AFTER_SECONDS = 0
    receiver.hang_seconds = 1.5  # every call is held, so the kill lands while calls are in flight
    first = secai_worker(concurrency=2, env=FAST)
    items = approve_items(deny_source, alice, 10)
    ids = list(Delivery.objects.filter(kind="execute").values_list("id", flat=True))
    assert len(ids) == 10
    wait_until(lambda: len(receiver.calls) >= 3, timeout=60, what="the worker to start delivering", on_timeout=first.log_tail)
    first.kill()
    in_flight = Delivery.objects.filter(pk__in=ids, state="sending").count()
    assert in_flight >= 1, states(ids)
    receiver.hang_seconds = 0
    second = secai_worker(concurrency=2, env=FAST)

    def all_delivered() -> bool:
        services.deliveries_sweep()  # what beat runs every 10 s: due rows and expired leases
        return states(ids) == {"delivered": 10}

    wait_until(
        all_delivered,
        timeout=90,
        interval=1.0,
        what="every action to be delivered",
        on_timeout=lambda: f"{states(ids)}\n{second.log_tail()}",
    )
    keys = {d.idempotency_key for d in Delivery.objects.filter(pk__in=ids)}
    assert keys == {f"secai-event-{item.event_id}-execute" for item in items}
    assert set(receiver.applied) == keys and all(n == 1 for n in receiver.applied.values())
    assert all(c.signature_ok for c in receiver.calls)
    resent = [k for k in keys if len(receiver.calls_for(k)) > 1]
    assert resent, "the killed worker's in-flight calls were sent again by the second worker"
    for key in resent:
        assert [c.attempt for c in receiver.calls_for(key)] == [1, 2]  # same key, next attempt
    row = Delivery.objects.get(idempotency_key=resent[0])
    assert row.attempts == 2 and len(row.log) == 1  # the killed attempt left no outcome; the second did

    # Replay every delivery message, as a broker redelivering after a restart would.
    calls_before = len(receiver.calls)
    done_before = len(second.succeeded(DELIVER))
    deliver.delay(ids)
    wait_until(
        lambda: len(second.succeeded(DELIVER)) > done_before, timeout=60, what="the replayed message", on_timeout=second.log_tail
    )
    replay = list(second.succeeded(DELIVER).values())[-1]
    assert "'skipped': 10" in replay, replay
    assert len(receiver.calls) == calls_before and states(ids) == {"delivered": 10}


def test_retries_with_backoff_then_reversal_through_the_worker(deny_source, receiver, alice, secai_worker):
    receiver.fail_first = 2
    worker = secai_worker(concurrency=1, env=FAST)
    [item] = approve_items(deny_source, alice, 1)
    execution = Delivery.objects.get(event=item.event, kind="execute")
    wait_until(
        lambda: Delivery.objects.get(pk=execution.pk).state == "delivered",
        timeout=60,
        what="the action to be delivered after two failures",
        on_timeout=worker.log_tail,
    )
    calls = receiver.calls_for(execution.idempotency_key)
    assert [c.attempt for c in calls] == [1, 2, 3] and all(c.signature_ok for c in calls)
    # Exponential backoff: at least 0.5 s, then at least 1 s between attempts (lower bounds only).
    assert calls[1].at - calls[0].at >= 0.5 and calls[2].at - calls[1].at >= 1.0
    assert receiver.applied == {execution.idempotency_key: 1}

    verdict = Verdict.objects.get(item=item)
    review_services.verdict_undo(verdict=verdict, reviewer=alice)
    review_services.verdict_submit(item=item, reviewer=alice, verdict="overturn", reason="known_benign")
    reversal = Delivery.objects.get(event=item.event, kind="reverse")
    wait_until(
        lambda: Delivery.objects.get(pk=reversal.pk).state == "delivered",
        timeout=60,
        what="the reversal",
        on_timeout=worker.log_tail,
    )
    [undo] = receiver.calls_for(reversal.idempotency_key)
    assert undo.path == "/undo" and undo.signature_ok and undo.body["operation"] == "reverse"

    # Replaying both deliveries and redoing the verdict changes nothing at the receiver.
    deliver.delay([execution.pk, reversal.pk])
    wait_until(
        lambda: "'skipped': 2" in " ".join(worker.succeeded(DELIVER).values()),
        timeout=60,
        what="the replay",
        on_timeout=worker.log_tail,
    )
    review_services.verdict_undo(verdict=Verdict.objects.get(item=item, undone_at__isnull=True), reviewer=alice)
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    assert Delivery.objects.filter(event=item.event).count() == 2
    assert receiver.applied == {execution.idempotency_key: 1, reversal.idempotency_key: 1}
    assert len(receiver.calls) == 4


def test_act_then_review_from_scoring_to_reversal_with_subscribers(
    live_server, trained_source, ingest, alice, carol, receiver, secai_worker
):
    """Events posted over HTTP are scored by the worker; act-then-review actions go out at once
    from the `actions` queue, subscribers hear every opened item, an overturn over the API reverses."""
    from tests.integration.helpers import http, post_events

    trained_source.api_clients.add(ingest)
    for name in ("step_up", "deny", "block"):
        webhook_for(trained_source, receiver, action=name, name=f"hook-{name}")
    for at in ActionType.objects.filter(source=trained_source).exclude(name="allow"):
        services.action_type_save(actor=carol, action_type=at, mode="act_then_review")
    services.subscription_save(
        actor=carol, name="soar", url=f"{receiver.url}/events", secret=SECRET, topics=["item.opened", "item.decided"]
    )
    worker = secai_worker(concurrency=2, env=FAST)
    ids = post_events(live_server, ingest, [r for r, _ in nsl_events(NSL_LIVE, 300, prefix="atr")])
    items = ReviewItem.objects.filter(event_id__in=ids)

    def settled() -> bool:
        return items.exists() and not Delivery.objects.exclude(state="delivered").exists()

    wait_until(settled, timeout=120, what="scoring and every delivery", on_timeout=worker.log_tail)
    acted = items.exclude(proposed_action="allow")
    assert acted.exists() and set(items.values_list("mode", flat=True)) == {"act_then_review"}
    executed = {f"secai-event-{i.event_id}-execute" for i in acted}
    assert {k for k in receiver.applied if k.endswith("-execute")} == executed
    opened = [c for c in receiver.calls if c.path == "/events"]
    assert sorted(c.body["item"]["id"] for c in opened) == sorted(items.values_list("id", flat=True))
    assert all(c.signature_ok for c in receiver.calls)

    target = acted.first()
    reply = http(alice).post(
        f"{live_server.url}/api/v1/review-items/{target.pk}/decision/",
        json={"verdict": "overturn", "reason": "known_benign"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    key = f"secai-event-{target.event_id}-reverse"
    wait_until(lambda: key in receiver.applied, timeout=60, what="the reversal", on_timeout=worker.log_tail)
    [undo] = receiver.calls_for(key)
    assert undo.path == "/undo" and undo.body["action"] == target.proposed_action
    wait_until(
        lambda: any(c.path == "/events" and c.body.get("topic") == "item.decided" for c in receiver.calls),
        timeout=60,
        what="the item.decided event",
        on_timeout=worker.log_tail,
    )
    assert sum(1 for k in receiver.applied if k.endswith("-execute")) == len(executed)  # nothing executed twice
