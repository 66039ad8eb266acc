"""The delivery outbox against a real webhook receiver on 127.0.0.1: signatures, idempotency keys,
retries with backoff, giving up and retrying by hand, and the execute/cancel/reverse state machine
under undo and redo of verdicts."""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from actions import services
from actions.models import Delivery
from reviews import services as review_services
from reviews.models import AuditEntry

pytestmark = pytest.mark.django_db


def execution(item, kind="execute") -> Delivery | None:
    return Delivery.objects.filter(event_id=item.event_id, kind=kind).first()


def send(row: Delivery) -> str:
    return services.delivery_attempt(delivery_id=row.pk)


def test_approve_in_propose_mode_executes_once_with_signature_and_key(deny, make_item, receiver, alice):
    item = make_item()
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    row = execution(item)
    assert row.state == "pending" and row.idempotency_key == f"secai-event-{item.event_id}-execute"
    assert send(row) == "delivered"
    assert send(row) == "skipped"  # a duplicated message sends nothing
    row.refresh_from_db()
    assert row.state == "delivered" and row.attempts == 1 and row.last_status == 200
    [call] = receiver.calls
    assert call.path == "/act" and call.signature_ok and call.key == row.idempotency_key
    assert call.body["operation"] == "execute" and call.body["action"] == "deny" and call.body["entity"] == "user-1"


def test_a_wrong_secret_is_refused_by_the_receiver_and_retried(deny, make_item, receiver, alice, settings):
    settings.SECAI_DELIVERY_BACKOFF_SECONDS = 0
    deny.executor.secret = "another-secret-that-is-long"
    deny.executor.save()
    item = make_item()
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    assert send(execution(item)) == "retry"
    assert receiver.calls[0].signature_ok is False and not receiver.applied
    assert execution(item).last_status == 401


def test_shadow_mode_executes_nothing(deny, make_item, alice):
    item = make_item(mode="shadow")
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    assert execution(item) is None


def test_an_action_without_executor_is_recorded_only(source, make_item, alice):
    item = make_item(action="block")
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    assert not Delivery.objects.exists()


def test_retries_back_off_exponentially_with_the_same_key(deny, make_item, receiver, alice, settings):
    settings.SECAI_DELIVERY_BACKOFF_SECONDS = 4
    receiver.fail_first = 2
    item = make_item()
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    row = execution(item)
    waits = []
    for expected in ("retry", "retry", "delivered"):
        assert send(row) == expected
        row.refresh_from_db()
        if expected == "retry":
            # The next attempt is due exactly the backoff after this attempt's outcome was recorded.
            waits.append((row.next_attempt_at - datetime.fromisoformat(row.log[-1]["at"])).total_seconds())
            assert send(row) == "skipped"  # not due yet: nobody sends it early
            Delivery.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
    assert waits == [4.0, 8.0]
    assert [c.attempt for c in receiver.calls] == [1, 2, 3]
    assert {c.key for c in receiver.calls} == {row.idempotency_key} and receiver.applied == {row.idempotency_key: 1}
    assert [entry["status"] for entry in row.log] == [503, 503, 200]


def test_given_up_after_the_limit(deny, make_item, receiver, alice, settings):
    settings.SECAI_DELIVERY_BACKOFF_SECONDS = 0
    receiver.fail_first = 3
    item = make_item()
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    row = execution(item)
    assert [send(row) for _ in range(3)] == ["retry", "retry", "failed"]
    assert send(row) == "skipped"
    row.refresh_from_db()
    assert row.state == "failed" and row.attempts == 3 and "try later" in row.last_error
    assert AuditEntry.objects.filter(verb="delivery.failed", object_id=str(row.pk)).exists()
    assert len(receiver.calls) == 3 and not receiver.applied


def test_retry_button_service_sends_a_failed_delivery_again(deny, make_item, receiver, alice, carol, settings):
    settings.SECAI_DELIVERY_BACKOFF_SECONDS = 0
    receiver.fail_first = 3
    item = make_item()
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    row = execution(item)
    for _ in range(3):
        send(row)
    row = services.delivery_retry(delivery=row, actor=carol)
    # The count goes on (3 failed, the retry's budget on top), so the history stays visible.
    assert row.state == "pending" and row.attempts == 3 and row.max_attempts == 6 and row.retries == 1
    assert send(row) == "delivered"
    calls = receiver.calls_for(row.idempotency_key)
    assert receiver.applied == {row.idempotency_key: 1} and len(calls) == 4
    assert [c.attempt for c in calls] == [1, 2, 3, 4] and {c.key for c in calls} == {row.idempotency_key}
    row.refresh_from_db()
    assert row.attempts == 4 and [e.get("status") for e in row.log] == [503, 503, 503, None, 200]
    assert row.log[3]["retry_by"] == "carol" and row.log[3]["attempt"] == 3
    audit = AuditEntry.objects.get(verb="delivery.retry", object_id=str(row.pk))
    assert audit.before["attempts"] == 3 and audit.after == {"max_attempts": 6, "retries": 1}
    with pytest.raises(review_services.ItemConflict, match="only a failed delivery"):
        services.delivery_retry(delivery=row, actor=carol)


def test_undo_before_sending_cancels_and_redo_revives_the_same_row(deny, make_item, receiver, alice):
    item = make_item()
    verdict = review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    first = execution(item)
    review_services.verdict_undo(verdict=verdict, reviewer=alice)
    assert execution(item).state == "cancelled"
    assert send(first) == "skipped" and not receiver.calls
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    again = execution(item)
    assert again.pk == first.pk and again.state == "pending"
    assert send(again) == "delivered" and len(receiver.calls) == 1


def test_overturn_after_execution_reverses_once_and_redo_does_not_execute_again(deny, make_item, receiver, alice):
    item = make_item()
    approve = review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    send(execution(item))
    review_services.verdict_undo(verdict=approve, reviewer=alice)
    assert execution(item).state == "delivered"  # what was sent stands until the next verdict
    overturn = review_services.verdict_submit(item=item, reviewer=alice, verdict="overturn", reason="known_benign")
    reversal = execution(item, "reverse")
    assert reversal.state == "pending" and execution(item).withdrawn
    assert send(reversal) == "delivered"
    review_services.verdict_undo(verdict=overturn, reviewer=alice)
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    assert Delivery.objects.filter(event_id=item.event_id).count() == 2
    assert [c.path for c in receiver.calls] == ["/act", "/undo"]
    assert receiver.calls[1].body["operation"] == "reverse" and receiver.calls[1].key.endswith("-reverse")
    assert AuditEntry.objects.filter(verb="action.not_repeated", object_id=str(item.pk)).exists()


def test_overturn_while_the_action_is_in_flight_holds_the_reversal_until_acknowledged(deny, make_item, receiver, alice, settings):
    item = make_item()
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    row = execution(item)
    # A worker has claimed the delivery (state sending) when the overturn arrives.
    Delivery.objects.filter(pk=row.pk).update(state="sending", attempts=1, lease_until=timezone.now() + timedelta(minutes=2))
    verdict = review_services.Verdict.objects.get(item=item)
    review_services.verdict_undo(verdict=verdict, reviewer=alice)
    review_services.verdict_submit(item=item, reviewer=alice, verdict="overturn", reason="known_benign")
    reversal = execution(item, "reverse")
    assert reversal.state == "held"
    assert send(reversal) == "skipped"  # nothing is reversed before the action is acknowledged
    # The lease runs out (the worker died): the next attempt delivers and releases the reversal.
    Delivery.objects.filter(pk=row.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert send(row) == "delivered"
    reversal.refresh_from_db()
    assert reversal.state == "pending"
    assert send(reversal) == "delivered"
    assert [c.path for c in receiver.calls] == ["/act", "/undo"]


def test_a_failed_action_that_is_overturned_is_neither_reversed_nor_retried(deny, make_item, receiver, alice, carol, settings):
    settings.SECAI_DELIVERY_BACKOFF_SECONDS = 0
    receiver.fail_first = 10
    item = make_item()
    approve = review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    row = execution(item)
    for _ in range(3):
        send(row)
    review_services.verdict_undo(verdict=approve, reviewer=alice)
    review_services.verdict_submit(item=item, reviewer=alice, verdict="overturn", reason="known_benign")
    assert execution(item, "reverse") is None
    row.refresh_from_db()
    assert row.state == "failed" and row.withdrawn
    with pytest.raises(review_services.ItemConflict, match="overturned"):
        services.delivery_retry(delivery=row, actor=carol)


def test_act_then_review_executes_at_opening_and_overturn_reverses(deny, make_item, receiver, alice):
    item = make_item(mode="act_then_review")
    services.items_opened(source_id=item.source_id, event_ids=[item.event_id])
    row = execution(item)
    assert row is not None and send(row) == "delivered"
    review_services.verdict_submit(item=item, reviewer=alice, verdict="overturn", reason="known_benign")
    assert send(execution(item, "reverse")) == "delivered"
    assert [c.body["operation"] for c in receiver.calls] == ["execute", "reverse"]


def test_act_then_review_approve_executes_nothing_more(deny, make_item, receiver, alice):
    item = make_item(mode="act_then_review")
    services.items_opened(source_id=item.source_id, event_ids=[item.event_id])
    send(execution(item))
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    assert Delivery.objects.filter(event_id=item.event_id).count() == 1 and len(receiver.calls) == 1


def test_log_only_executor_delivers_into_the_log(source, make_item, alice, caplog):
    from actions.models import ActionType, Executor

    log = Executor.objects.create(name="log", kind="log")
    ActionType.objects.filter(source=source, name="deny").update(executor=log)
    item = make_item()
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    with caplog.at_level("INFO", logger="secai.actions"):
        assert send(execution(item)) == "delivered"
    assert "action executed by log-only executor log" in caplog.text and '"entity":"user-1"' in caplog.text


def test_sweeper_finds_overdue_and_abandoned_deliveries(deny, make_item, alice):
    a, b, c, fresh = make_item(), make_item(entity="u2"), make_item(entity="u3"), make_item(entity="u4")
    for item in (a, b, c, fresh):
        review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    Delivery.objects.exclude(event_id=fresh.event_id).update(next_attempt_at=timezone.now() - timedelta(minutes=1))
    Delivery.objects.filter(event_id=b.event_id).update(
        state="sending", attempts=1, lease_until=timezone.now() - timedelta(seconds=1)
    )
    Delivery.objects.filter(event_id=c.event_id).update(
        state="sending", attempts=1, lease_until=timezone.now() + timedelta(minutes=1)
    )
    # a (pending, overdue) and b (its worker's lease ran out); not c (held), nor fresh (its message is on its way)
    assert services.deliveries_sweep() == 2
