"""Escalated items (four-eyes disagreement) reach admins: a count in the header, and claim-next
hands an admin escalations before ordinary items, one admin per escalation."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse
from django.utils import timezone

from reviews import selectors, services
from reviews.models import ReviewItem
from reviews.roles import ADMINS, REVIEWERS
from tests.conftest import PASSWORD, _user
from tests.factories import ReviewItemFactory

pytestmark = pytest.mark.django_db


def escalated_item(alice, bob, **kw) -> ReviewItem:
    item = ReviewItemFactory(required_verdicts=2, **kw)
    services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    services.verdict_submit(item=item, reviewer=bob, verdict="overturn", reason="known_benign")
    item.refresh_from_db()
    assert item.state == "escalated"
    return item


@pytest.fixture
def dave(db) -> User:
    """A second admin."""
    user = User.objects.create_user(username="dave", password=PASSWORD)
    user.groups.add(Group.objects.get_or_create(name=ADMINS)[0])
    return user


def test_claim_next_hands_an_admin_escalations_before_ordinary_items(alice, bob, carol):
    ordinary = ReviewItemFactory(priority=3.99)  # riskier than either escalation
    low = escalated_item(alice, bob, priority=2.1)
    high = escalated_item(alice, bob, priority=2.8)
    first = services.review_item_claim_next(reviewer=carol)
    assert first.pk == high.pk
    assert (first.state, first.claimed_by) == ("escalated", carol)  # held, and still reads as an escalation
    services.verdict_submit(item=first, reviewer=carol, verdict="overturn", reason="model_error")
    assert services.review_item_claim_next(reviewer=carol).pk == low.pk
    services.verdict_submit(item=low, reviewer=carol, verdict="approve", reason="confirmed_attack")
    assert services.review_item_claim_next(reviewer=carol).pk == ordinary.pk


def test_reviewers_are_never_handed_escalations(alice, bob):
    escalated_item(alice, bob, priority=3.9)
    ordinary = ReviewItemFactory(priority=2.1)
    reviewer3 = _user("erin", REVIEWERS)  # assigned to the sources that exist
    assert services.review_item_claim_next(reviewer=reviewer3).pk == ordinary.pk
    with pytest.raises(services.ItemConflict, match="escalated to an admin"):
        services.review_item_claim(item=ReviewItem.objects.get(state="escalated"), reviewer=reviewer3)


def test_two_admins_never_work_on_the_same_escalation(alice, bob, carol, dave):
    one = escalated_item(alice, bob, priority=2.9)
    two = escalated_item(alice, bob, priority=2.5)
    assert services.review_item_claim_next(reviewer=carol).pk == one.pk
    assert services.review_item_claim_next(reviewer=dave).pk == two.pk
    with pytest.raises(services.ItemConflict, match="being decided by carol until"):
        services.verdict_submit(item=one, reviewer=dave, verdict="approve", reason="confirmed_attack")
    one.refresh_from_db()
    assert one.state == "escalated" and one.claimed_by == carol


def test_an_admin_who_gave_one_of_the_verdicts_is_not_handed_the_escalation(alice, carol, dave):
    item = ReviewItemFactory(required_verdicts=2)
    services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    services.verdict_submit(item=item, reviewer=carol, verdict="overturn", reason="known_benign")
    item.refresh_from_db()
    assert item.state == "escalated"
    assert services.review_item_claim_next(reviewer=carol) is None
    assert selectors.escalations_waiting_count(admin=carol) == 0
    assert selectors.escalations_waiting_count(admin=dave) == 1
    assert services.review_item_claim_next(reviewer=dave).pk == item.pk


def test_releasing_or_expiring_an_escalation_claim_keeps_it_escalated(alice, bob, carol, dave):
    item = escalated_item(alice, bob)
    services.review_item_claim_next(reviewer=carol)
    services.review_item_release(item=item, reviewer=carol)
    item.refresh_from_db()
    assert (item.state, item.claimed_by) == ("escalated", None)
    services.review_item_claim(item=item, reviewer=carol)
    ReviewItem.objects.filter(pk=item.pk).update(claim_expires_at=timezone.now() - timedelta(seconds=1))
    assert selectors.escalations_waiting_count(admin=dave) == 1  # an expired claim holds nothing
    assert services.review_claims_expire() == 1
    item.refresh_from_db()
    assert (item.state, item.claimed_by, item.claim_expires_at) == ("escalated", None, None)


def test_header_shows_admins_how_many_escalations_wait(client, alice, bob, carol):
    escalated_item(alice, bob)
    escalated_item(alice, bob)
    ReviewItemFactory()
    assert client.login(username="carol", password=PASSWORD)
    html = client.get(reverse("reviews:queue")).content.decode()
    assert 'id="escalations-link"' in html and '<span class="badge action-deny">2</span>' in html
    assert "2 escalated items</strong> wait for an admin" in html
    client.logout()
    assert client.login(username="alice", password=PASSWORD)
    html = client.get(reverse("reviews:queue")).content.decode()
    assert "escalations-link" not in html and "escalations-notice" not in html


def test_deciding_an_escalation_in_the_console_takes_the_admin_to_the_next_escalation(client, alice, bob, carol):
    ReviewItemFactory(priority=3.99)
    first = escalated_item(alice, bob, priority=2.9)
    second = escalated_item(alice, bob, priority=2.2)
    assert client.login(username="carol", password=PASSWORD)
    resp = client.post(reverse("reviews:next"))
    assert resp["Location"] == reverse("reviews:item", args=[first.pk])
    resp = client.post(
        reverse("reviews:decide", args=[first.pk]), {"verdict": "overturn", "reason": "model_error", "then": "next"}
    )
    assert resp["Location"] == reverse("reviews:item", args=[second.pk])


def test_admins_claim_next_through_the_api_prefers_escalations(api, alice, bob, carol):
    ReviewItemFactory(priority=3.99)
    item = escalated_item(alice, bob, priority=2.1)
    resp = api(carol).post("/api/v1/review-items/claim-next/")
    assert resp.status_code == 200 and resp.json()["id"] == item.pk and resp.json()["state"] == "escalated"


@pytest.mark.parametrize(
    "fallback, shown, not_shown",
    [
        ("escalate", "No reviewer decided within the deadline", "The reviewers disagreed"),
        ("", "The reviewers disagreed", "No reviewer decided within the deadline"),
    ],
)
def test_escalated_item_says_why_it_was_escalated(client, carol, alice, fallback, shown, not_shown):
    item = ReviewItemFactory(state="escalated", fallback=fallback)
    for viewer in (carol, alice):
        client.force_login(viewer)
        page = client.get(f"/items/{item.pk}/").content.decode()
        assert shown in page and not_shown not in page
