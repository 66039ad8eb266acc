"""A reviewer's day in the console: the queue, claiming, approving, overturning, stale forms."""

from __future__ import annotations

import pytest

from reviews.choices import ACTION_SEVERITY, EventStatus, LabelOrigin, ReviewState
from reviews.models import Event, Label, ReviewItem, Verdict
from reviews.services import events_ingest
from tests.browser.helpers import claim_next, fill_decision, item_id_of, item_url, messages_of, queue_item_ids, submit_decision
from tests.conftest import NSL_LIVE, nsl_events
from tests.factories import ReviewItemFactory, SourceFactory

pytestmark = pytest.mark.browser


def test_reviewer_claims_the_riskiest_item_approves_it_and_gets_the_next(trained_source, alice, login):
    rows = nsl_events(NSL_LIVE, 30, prefix="live")
    # Scored by the real champion (Celery runs eagerly) the moment the ingest commits.
    events_ingest(source=trained_source, rows=[r for r, _ in rows])
    items = {i.pk: i for i in ReviewItem.objects.select_related("event", "event__model_version")}
    assert len(items) >= 3, "the champion should flag several of the first 30 KDDTest+ rows"

    page = login(alice, form=True)
    assert page.get_by_role("heading", name="Review queue").is_visible()
    shown = queue_item_ids(page)
    assert sorted(shown) == sorted(items)
    ranks = [(ACTION_SEVERITY[items[pk].proposed_action], items[pk].score) for pk in shown]
    assert ranks == sorted(ranks, reverse=True), "the queue must list the most severe action, then the highest score, first"
    assert page.get_by_text(f"{len(items)} items, highest risk first.").is_visible()
    page.screenshot(path="/tmp/secai-queue.png", full_page=True)

    first_id = claim_next(page)
    assert first_id == shown[0]
    first = items[first_id]
    event = first.event
    assert page.locator("#item-state").inner_text() == "claimed"
    assert float(page.locator("#score").inner_text()) == pytest.approx(event.score, abs=1e-4)
    summary = page.locator(".card table").first
    assert f"v{event.model_version.version}" in summary.inner_text()
    assert event.external_id in summary.inner_text()
    assert first.get_proposed_action_display() in page.locator("h2").inner_text()
    for name in ("protocol_type", "service", "src_bytes", "count"):
        row = page.locator("#attributes tr", has=page.locator(f"th:text-is('{name}')"))
        assert row.locator("td").inner_text() == str(event.attributes[name])
    page.screenshot(path="/tmp/secai-item.png", full_page=True)

    fill_decision(page, verdict="Approve", reason="confirmed attack")
    submit_decision(page)

    assert messages_of(page, "success") == [f"Approved: item {first_id} ({event.external_id}) is decided."]
    assert item_id_of(page) == shown[1], "after a decision the next riskiest item is handed out"
    assert page.locator("#item-state").inner_text() == "claimed"

    page.goto(item_url(first_id))
    assert page.locator("#item-state").inner_text() == "decided"
    assert page.get_by_text("This item has been decided.").is_visible()
    assert page.locator("#decision-form").count() == 0
    assert "Approve by alice, confirmed attack" in page.locator("#verdicts-card").inner_text()

    verdict = Verdict.objects.get(item_id=first_id)
    assert (verdict.reviewer, verdict.verdict, verdict.reason) == (alice, "approve", "confirmed_attack")
    label = Label.objects.get(event=event)
    assert (label.is_threat, label.origin, label.verdict_id) == (True, LabelOrigin.VERDICT, verdict.pk)
    assert Event.objects.get(pk=event.pk).status == EventStatus.DECIDED
    second = ReviewItem.objects.get(pk=shown[1])
    assert (second.state, second.claimed_by) == (ReviewState.CLAIMED, alice)


def test_reviewer_overturns_with_a_reason_and_a_note(alice, login):
    source = SourceFactory()
    item = ReviewItemFactory(event__source=source, event__score=0.97, event__entity="svc-backup")
    ReviewItemFactory(event__source=source, event__score=0.61)
    note = "Nightly backup job from the ops subnet; ticket OPS-1234."

    page = login(alice)
    assert claim_next(page) == item.pk
    # No reason is preselected, so the browser will not submit until the reviewer picks one.
    page.get_by_role("radio", name="Overturn").check()
    page.get_by_role("button", name="Submit and take next").click()
    assert page.get_by_label("Reason").evaluate("el => el.validity.valueMissing") is True
    assert item_id_of(page) == item.pk
    assert not Verdict.objects.exists()

    fill_decision(page, verdict="Overturn", reason="known benign activity", note=note)
    submit_decision(page)

    assert messages_of(page, "success") == [f"Overturned: item {item.pk} ({item.event.external_id}) is decided."]
    page.goto(item_url(item.pk))
    verdicts_card = page.locator("#verdicts-card").inner_text()
    assert "Overturn by alice, known benign activity" in verdicts_card
    assert note in verdicts_card

    verdict = Verdict.objects.get(item=item)
    assert (verdict.verdict, verdict.reason, verdict.note) == ("overturn", "known_benign", note)
    label = Label.objects.get(event=item.event)
    assert (label.is_threat, label.origin) == (False, LabelOrigin.VERDICT), "an overturn is a false positive: a benign label"


def test_a_decided_item_cannot_be_decided_again_from_a_stale_form(alice, login):
    item = ReviewItemFactory()
    stale = login(alice)
    stale.goto(item_url(item.pk))
    fill_decision(stale, verdict="Overturn", reason="model error")

    # The same reviewer decides the item in a second tab; the first tab still shows the form.
    fresh = stale.context.new_page()
    fresh.goto("/")
    assert claim_next(fresh) == item.pk
    fill_decision(fresh, verdict="Approve", reason="policy violation")
    submit_decision(fresh)
    assert messages_of(fresh, "success") == [f"Approved: item {item.pk} ({item.event.external_id}) is decided."]

    submit_decision(stale)

    assert messages_of(stale, "error") == ["Your decision was not recorded. This item has already been decided."]
    assert stale.locator("#item-state").inner_text() == "decided"
    assert stale.locator("#decision-form").count() == 0
    verdict = Verdict.objects.get(item=item)
    assert (verdict.verdict, verdict.reason) == ("approve", "policy_violation")
    assert Label.objects.get(event=item.event).is_threat is True
