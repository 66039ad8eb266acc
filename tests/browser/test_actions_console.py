"""The actions side in the browser: mode badges on the queue and the item page, overturning with the
allow-list checkbox, and the delivery log's retry button sending a failed action again."""

from __future__ import annotations

import pytest

from actions import services
from actions.models import ActionType, Delivery, Executor, ListEntry
from reviews.models import Verdict
from tests.actions.receiver import Receiver
from tests.browser.helpers import fill_decision, item_url, messages_of, queue_item_ids
from tests.factories import EventFactory, ReviewItemFactory, SourceFactory

pytestmark = pytest.mark.browser

SECRET = "browser-secret-0123456789"


@pytest.fixture
def source(transactional_db):
    source = SourceFactory(name="idp")
    services.action_types_seed(source=source)
    return source


def item_on(source, *, mode: str, entity: str, action: str = "deny"):
    return ReviewItemFactory(event=EventFactory(source=source, entity=entity, proposed_action=action), mode=mode)


def test_every_queue_row_and_item_page_shows_the_mode(source, alice, login):
    items = {mode: item_on(source, mode=mode, entity=f"user-{mode}") for mode in ("shadow", "propose", "act_then_review")}
    page = login(alice)
    ids = queue_item_ids(page)
    assert sorted(ids) == sorted(i.pk for i in items.values())
    for mode, item in items.items():
        row = page.locator("#queue tbody tr", has=page.locator(f"a:text-is('#{item.pk}')"))
        badge = row.locator(f".mode-{mode}")
        assert badge.is_visible(), mode
        assert badge.inner_text() == {"act_then_review": "act, then review"}.get(mode, mode)
    page.goto(item_url(items["act_then_review"].pk))
    assert page.locator("#item-mode").inner_text() == "act, then review"
    assert "executed when the item opened; reversed if overturned" in page.locator(".card table").first.inner_text()
    page.goto(item_url(items["shadow"].pk))
    assert page.locator("#item-mode").inner_text() == "shadow"


def test_overturn_with_the_allow_list_checkbox(source, alice, login):
    item = item_on(source, mode="propose", entity="backup-server-3")
    page = login(alice)
    page.goto(item_url(item.pk))
    fill_decision(page, verdict="Overturn", reason="known benign activity")
    label = page.locator("label:has(#id_allowlist_entity)").inner_text()
    assert "put backup-server-3 on the allow list" in label and "for 90 days, until" in label
    page.locator("#id_allowlist_entity").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Submit and take next").click()
    assert f"backup-server-3 is on the allow list of {source.name} for 90 days." in messages_of(page, "success")
    entry = ListEntry.objects.get(kind="allow")
    assert entry.entity == "backup-server-3" and entry.created_by == "alice" and entry.expires_at is not None
    assert Verdict.objects.get(item=item).verdict == "overturn"
    page.goto("/actions/lists/")
    assert page.locator("#list-entries tr[data-entity='backup-server-3']").is_visible()
    page.goto(item_url(item.pk))
    assert page.locator("#allowlisted").is_visible()


def test_retry_button_sends_a_failed_action_again(source, alice, carol, login):
    receiver = Receiver(secret=SECRET).start()
    try:
        executor = Executor.objects.create(name="fw", url=f"{receiver.url}/act", secret=SECRET, max_attempts=2)
        ActionType.objects.filter(source=source, name="deny").update(executor=executor)
        item = item_on(source, mode="propose", entity="laptop-12")
        receiver.fail_first = 2  # the two automatic attempts fail
        from reviews.services import verdict_submit

        verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
        row = Delivery.objects.get(kind="execute")
        for _ in range(2):
            Delivery.objects.filter(pk=row.pk, state="pending").update(next_attempt_at=row.created_at)
            services.delivery_attempt(delivery_id=row.pk)
        row.refresh_from_db()
        assert row.state == "failed" and len(receiver.calls) == 2

        page = login(carol)
        page.goto("/actions/deliveries/?state=failed")
        line = page.locator(f"#delivery-{row.pk}")
        assert line.locator(".delivery-failed").inner_text() == "failed"
        page.screenshot(path="/tmp/secai-deliveries.png", full_page=True)
        line.get_by_role("button", name="Retry").click()
        # htmx swaps the row in place; with the eager test broker the retry has been sent by then.
        page.locator(f"#delivery-{row.pk} .delivery-delivered").wait_for()
        assert page.locator(f"#delivery-{row.pk} button.retry").count() == 0
        row.refresh_from_db()
        assert row.state == "delivered" and receiver.applied == {row.idempotency_key: 1}
        assert [c.key for c in receiver.calls] == [row.idempotency_key] * 3
        # The attempt count goes on after the retry: the receiver and the log see attempt 3.
        assert [c.attempt for c in receiver.calls] == [1, 2, 3]
        assert page.locator(f"#delivery-{row.pk} .attempts").inner_text() == "3 / 4 (retried 1×)"

        page.goto(item_url(item.pk))
        assert "delivered" in page.locator("#actions-card").inner_text()
    finally:
        receiver.stop()
