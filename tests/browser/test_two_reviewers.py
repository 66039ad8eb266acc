"""Two reviewers, two browsers, one item: only one decision may be recorded, and the loser is told."""

from __future__ import annotations

import pytest

from reviews.choices import ReviewState
from reviews.models import Label, Verdict
from tests.browser.helpers import claim_next, fill_decision, force_decision_post, item_url, messages_of, submit_decision
from tests.factories import ReviewItemFactory

pytestmark = pytest.mark.browser


def test_second_reviewer_cannot_decide_an_item_another_holds(alice, bob, login):
    item = ReviewItemFactory()
    alice_page, bob_page = login(alice), login(bob)
    assert claim_next(alice_page) == item.pk

    bob_page.goto(item_url(item.pk))
    assert bob_page.get_by_text("You cannot decide this item while another reviewer holds it.").is_visible()
    assert "Claimed by alice" in bob_page.locator("#decision-card").inner_text()
    assert bob_page.locator("#decision-form").count() == 0

    # The page hides the form; the server must refuse the POST anyway.
    force_decision_post(bob_page, item_id=item.pk, verdict="overturn", reason="known_benign")
    errors = messages_of(bob_page, "error")
    assert len(errors) == 1 and errors[0].startswith("Your decision was not recorded. This item is claimed by alice until"), (
        errors
    )
    assert not Verdict.objects.filter(item=item).exists()
    item.refresh_from_db()
    assert (item.state, item.claimed_by) == (ReviewState.CLAIMED, alice)

    # alice's claim is intact: her decision goes through.
    fill_decision(alice_page, verdict="Approve", reason="confirmed attack")
    submit_decision(alice_page)
    assert messages_of(alice_page, "success")[0].startswith(f"Approved: item {item.pk} ")
    assert list(Verdict.objects.filter(item=item).values_list("reviewer__username", "verdict")) == [("alice", "approve")]


@pytest.mark.parametrize("alice_also_decides", [False, True], ids=["alice-holds-it", "alice-decided-it"])
def test_form_loaded_before_another_reviewer_claimed_is_refused(alice, bob, login, alice_also_decides):
    item = ReviewItemFactory()
    alice_page, bob_page = login(alice), login(bob)

    # bob opens the item while it is still open, so his page shows the form.
    bob_page.goto(item_url(item.pk))
    fill_decision(bob_page, verdict="Overturn", reason="expected behaviour of this entity")

    assert claim_next(alice_page) == item.pk
    if alice_also_decides:
        fill_decision(alice_page, verdict="Approve", reason="confirmed attack")
        submit_decision(alice_page)

    submit_decision(bob_page)

    expected = "This item has already been decided." if alice_also_decides else "This item is claimed by alice until"
    errors = messages_of(bob_page, "error")
    assert len(errors) == 1 and errors[0].startswith(f"Your decision was not recorded. {expected}"), errors
    assert not Verdict.objects.filter(item=item, reviewer=bob).exists(), "bob's late decision must not be stored"
    item.refresh_from_db()
    if alice_also_decides:
        assert Verdict.objects.filter(item=item).count() == 1
        assert item.state == ReviewState.DECIDED
        assert Label.objects.get(event=item.event).is_threat is True, "bob's overturn must not flip alice's label"
    else:
        assert (item.state, item.claimed_by) == (ReviewState.CLAIMED, alice)
        assert not Label.objects.filter(event=item.event).exists()
