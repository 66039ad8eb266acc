"""Skip: let go of an item and take the next other one. Others get the skipped item at once; the
reviewer who skipped it is not handed it again for SECAI_SKIP_SECONDS. And an expired claim reads
as expired, not as "claimed until" a time that has passed."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from reviews import selectors, services
from reviews.models import AuditEntry, ItemSkip, ReviewItem
from tests.conftest import PASSWORD
from tests.factories import ReviewItemFactory, SourceFactory

pytestmark = pytest.mark.django_db


def test_release_hands_the_same_item_back_but_skip_does_not(alice):
    first, second = ReviewItemFactory(priority=3.9), ReviewItemFactory(priority=2.5)
    assert services.review_item_claim_next(reviewer=alice).pk == first.pk
    services.review_item_release(item=first, reviewer=alice)
    assert services.review_item_claim_next(reviewer=alice).pk == first.pk  # release: back to everyone, me included
    services.review_item_skip(item=first, reviewer=alice)
    first.refresh_from_db()
    assert (first.state, first.claimed_by) == ("open", None)
    assert services.review_item_claim_next(reviewer=alice).pk == second.pk
    entry = AuditEntry.objects.filter(verb="item.skip", object_id=str(first.pk)).get()
    assert entry.actor == alice and entry.after["released"] is True


def test_others_get_a_skipped_item_at_once(alice, bob):
    item = ReviewItemFactory()
    services.review_item_claim_next(reviewer=alice)
    services.review_item_skip(item=item, reviewer=alice)
    assert services.review_item_claim_next(reviewer=alice) is None
    assert services.review_item_claim_next(reviewer=bob).pk == item.pk


def test_a_skipped_item_comes_back_after_the_skip_period(alice, settings):
    item = ReviewItemFactory()
    skip = services.review_item_skip(item=item, reviewer=alice)
    assert (
        timedelta(seconds=settings.SECAI_SKIP_SECONDS - 5)
        < skip.until - timezone.now()
        <= timedelta(seconds=settings.SECAI_SKIP_SECONDS)
    )
    ItemSkip.objects.filter(pk=skip.pk).update(until=timezone.now() - timedelta(seconds=1))
    assert services.review_item_claim_next(reviewer=alice).pk == item.pk
    services.review_claims_expire()
    assert not ItemSkip.objects.exists()  # the sweeper forgets skips that are over


def test_skipping_again_extends_the_skip_and_a_decided_item_cannot_be_skipped(alice):
    item = ReviewItemFactory()
    first = services.review_item_skip(item=item, reviewer=alice)
    ItemSkip.objects.filter(pk=first.pk).update(until=timezone.now() + timedelta(seconds=10))
    again = services.review_item_skip(item=item, reviewer=alice)
    assert ItemSkip.objects.count() == 1 and again.until > timezone.now() + timedelta(seconds=60)
    services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    with pytest.raises(services.ItemConflict, match="already been decided"):
        services.review_item_skip(item=item, reviewer=alice)


def test_skip_does_not_touch_another_reviewers_claim(alice, bob):
    item = ReviewItemFactory()
    services.review_item_claim(item=item, reviewer=bob)
    services.review_item_skip(item=item, reviewer=alice)
    item.refresh_from_db()
    assert (item.state, item.claimed_by) == ("claimed", bob)


def test_skip_in_the_console_moves_on_and_says_when_the_item_returns(client, alice):
    first, second = ReviewItemFactory(priority=3.9), ReviewItemFactory(priority=2.5)
    assert client.login(username="alice", password=PASSWORD)
    client.post(reverse("reviews:next"))
    page = client.get(reverse("reviews:item", args=[first.pk])).content.decode()
    assert f'action="{reverse("reviews:skip", args=[first.pk])}"' in page
    resp = client.post(reverse("reviews:skip", args=[first.pk]), follow=True)
    assert resp.redirect_chain[-1][0] == reverse("reviews:item", args=[second.pk])
    assert f"Skipped item {first.pk}: it is back in the queue for others" in resp.content.decode()
    # With only the skipped item left, the queue says why nothing is handed out.
    services.verdict_submit(item=second, reviewer=alice, verdict="approve", reason="confirmed_attack")
    resp = client.post(reverse("reviews:next"), follow=True)
    assert resp.redirect_chain[-1][0] == reverse("reviews:queue")
    assert "the 1 item(s) you skipped are left to others" in resp.content.decode()


def test_skip_through_the_api_returns_the_next_item(api, alice, mallory):
    first, second = ReviewItemFactory(priority=3.9), ReviewItemFactory(priority=2.5)
    assert api(mallory).post(f"/api/v1/review-items/{first.pk}/skip/").status_code == 403
    assert api(alice).post("/api/v1/review-items/claim-next/").json()["id"] == first.pk
    resp = api(alice).post(f"/api/v1/review-items/{first.pk}/skip/")
    assert resp.status_code == 200 and resp.json()["id"] == second.pk
    assert api(alice).post(f"/api/v1/review-items/{second.pk}/skip/").status_code == 204
    assert set(ReviewItem.objects.values_list("state", flat=True)) == {"open"}


def test_an_expired_claim_reads_as_expired_and_open(client, alice, bob):
    item = ReviewItemFactory()
    services.review_item_claim(item=item, reviewer=alice)
    ReviewItem.objects.filter(pk=item.pk).update(claim_expires_at=timezone.now() - timedelta(minutes=3))
    assert client.login(username="bob", password=PASSWORD)
    html = client.get(reverse("reviews:item", args=[item.pk])).content.decode()
    assert "Claimed by" not in html and "The claim of alice expired at" in html and "open to anyone" in html
    assert '<span class="badge" id="item-state">open</span>' in html
    assert 'id="decision-form"' in html and 'id="claim"' in html
    queue = client.get(reverse("reviews:queue") + "?state=claimed").content.decode()
    assert 'open <span class="muted">(claim of alice expired)</span>' in queue and "claimed (alice)" not in queue


@pytest.mark.parametrize("persona", ["mallory", "ingest", None])
def test_only_reviewers_can_skip_in_the_console(client, request, persona):
    item = ReviewItemFactory()
    if persona:
        assert client.login(username=request.getfixturevalue(persona).username, password=PASSWORD)
    resp = client.post(reverse("reviews:skip", args=[item.pk]))
    if persona:
        assert resp.status_code == 403
    else:
        assert resp.status_code == 302 and resp["Location"].startswith("/login/")
    assert not ItemSkip.objects.exists() and not AuditEntry.objects.filter(verb="item.skip").exists()


def test_skip_and_the_next_item_stay_within_the_reviewers_sources(client, api, alice, bob):
    mine, theirs = SourceFactory(reviewers=[alice]), SourceFactory(reviewers=[bob])
    first = ReviewItemFactory(event__source=mine, priority=2.0)
    second = ReviewItemFactory(event__source=mine, priority=1.0)
    hidden = ReviewItemFactory(event__source=theirs, priority=3.9)  # the riskiest, but not alice's source
    assert services.review_item_claim_next(reviewer=alice).pk == first.pk
    resp = api(alice).post(f"/api/v1/review-items/{first.pk}/skip/")
    assert resp.status_code == 200 and resp.json()["id"] == second.pk
    assert list(ReviewItem.objects.filter(claimed_by=alice, state="claimed").values_list("pk", flat=True)) == [second.pk]
    assert api(alice).post(f"/api/v1/review-items/{second.pk}/skip/").status_code == 204  # never the other source's item
    # Another source's item cannot be skipped, nor told apart from one that does not exist.
    with pytest.raises(services.ItemNotFound):
        services.review_item_skip(item=hidden, reviewer=alice)
    assert api(alice).post(f"/api/v1/review-items/{hidden.pk}/skip/").status_code == 404
    assert client.login(username="alice", password=PASSWORD)
    assert client.post(reverse("reviews:skip", args=[hidden.pk])).status_code == 404
    assert not ItemSkip.objects.filter(item=hidden).exists()
    assert ReviewItem.objects.get(pk=hidden.pk).state == "open"


def test_an_admin_skipping_an_escalation_lets_go_of_it_and_gets_the_next(alice, bob, carol):
    esc = ReviewItemFactory(required_verdicts=2, priority=1.0)
    services.verdict_submit(item=esc, reviewer=alice, verdict="approve", reason="confirmed_attack")
    services.verdict_submit(item=esc, reviewer=bob, verdict="overturn", reason="known_benign")
    ordinary = ReviewItemFactory(priority=3.9)
    assert services.review_item_claim_next(reviewer=carol).pk == esc.pk
    services.review_item_skip(item=esc, reviewer=carol)
    esc.refresh_from_db()
    assert (esc.state, esc.claimed_by) == ("escalated", None)
    assert services.review_item_claim_next(reviewer=carol).pk == ordinary.pk
    assert selectors.item_skips_pending(reviewer=carol)[0] == 1


def test_the_skip_body_is_refused(api, alice):
    item = ReviewItemFactory()
    resp = api(alice).post(f"/api/v1/review-items/{item.pk}/skip/", {"until": "2099-01-01T00:00:00Z"}, format="json")
    assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == "body"
    assert not ItemSkip.objects.exists()
