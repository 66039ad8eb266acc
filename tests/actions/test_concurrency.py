"""Races on the outbox with real concurrent transactions on PostgreSQL: workers racing for one
delivery, an overturn racing the delivery of its action, two decisions racing to create the one
execution row of an event."""

import pytest
from django.db import connection

from actions import services
from actions.models import Delivery
from reviews import services as review_services
from tests.reviews.test_concurrency import run_concurrently

# serialized_rollback, like the integration tests: the flush after each test then leaves the
# migrations' rows (content types, groups) as a later serialized test expects to find them.
pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("concurrency tests need PostgreSQL (make test runs them with SECAI_TEST_DB=postgres)")


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    """The test plays the workers itself: nothing is handed to the (eager) broker."""
    monkeypatch.setattr(services, "deliveries_enqueue", lambda ids, countdown=None: None)


def test_workers_racing_for_one_delivery_send_it_once(deny, make_item, receiver, alice):
    item = make_item()
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    row = Delivery.objects.get(event=item.event)
    receiver.hang_seconds = 0.5  # the winner is still sending while the others try
    results, errors = run_concurrently([lambda: services.delivery_attempt(delivery_id=row.pk)] * 6)
    assert errors == [None] * 6
    assert sorted(results) == ["delivered"] + ["skipped"] * 5
    assert len(receiver.calls) == 1


def test_overturn_racing_the_delivery_reverses_exactly_when_the_action_went_out(deny, make_item, receiver, alice, bob):
    for round_ in range(4):
        item = make_item(entity=f"u{round_}", mode="act_then_review")
        services.items_opened(source_id=item.source_id, event_ids=[item.event_id])
        execution = Delivery.objects.get(event=item.event, kind="execute")
        results, errors = run_concurrently(
            [
                lambda e=execution: services.delivery_attempt(delivery_id=e.pk),
                lambda i=item: review_services.verdict_submit(item=i, reviewer=bob, verdict="overturn", reason="known_benign"),
            ]
        )
        assert errors == [None, None]
        execution.refresh_from_db()
        reversal = Delivery.objects.filter(event=item.event, kind="reverse").first()
        if execution.state == "cancelled":  # the overturn came first: nothing was ever sent
            assert results[0] == "skipped" and reversal is None
            assert not receiver.calls_for(execution.idempotency_key)
        else:  # the action went out: its reversal is due, never before the acknowledgement
            assert execution.state == "delivered" and reversal is not None and reversal.state == "pending"
            assert services.delivery_attempt(delivery_id=reversal.pk) == "delivered"
            assert [c.path for c in receiver.calls_for(execution.idempotency_key)] == ["/act"]


def test_two_decisions_racing_make_one_execution_row(deny, make_item, alice, bob):
    items = [make_item(entity=f"e{i}") for i in range(5)]
    for item in items:
        results, errors = run_concurrently(
            [
                lambda i=item: services.execution_request(item=i, action_type=deny, reason="race"),
                lambda i=item: services.execution_request(item=i, action_type=deny, reason="race"),
            ]
        )
        assert errors == [None, None]
        assert Delivery.objects.filter(event=item.event, kind="execute").count() == 1
        assert results[0].pk == results[1].pk
