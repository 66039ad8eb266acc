"""Claims and verdicts: one reviewer per item, one decision per item, every verdict a label."""

from datetime import timedelta

import pytest
from django.utils import timezone

from reviews import services
from reviews.models import AuditEntry, Label, ReviewItem, Verdict
from tests.factories import ReviewItemFactory

pytestmark = pytest.mark.django_db


def test_approve_records_verdict_label_and_audit(alice):
    item = ReviewItemFactory()
    services.review_item_claim(item=item, reviewer=alice)
    verdict = services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack", note="seen before")
    item.refresh_from_db()
    assert item.state == "decided" and item.decided_at is not None
    item.event.refresh_from_db()
    assert item.event.status == "decided"
    label = Label.objects.get(event=item.event)
    assert label.is_threat is True and label.origin == "verdict" and label.verdict == verdict
    verbs = list(AuditEntry.objects.filter(object_id=str(item.pk)).order_by("pk").values_list("verb", flat=True))
    assert verbs == ["item.claim", "item.decide"]


def test_overturn_is_a_benign_label(alice):
    item = ReviewItemFactory()
    services.verdict_submit(item=item, reviewer=alice, verdict="overturn", reason="known_benign")
    assert Label.objects.get(event=item.event).is_threat is False


def test_second_reviewer_cannot_decide_claimed_item(alice, bob):
    item = ReviewItemFactory()
    services.review_item_claim(item=item, reviewer=alice)
    with pytest.raises(services.ItemConflict, match="claimed by alice"):
        services.verdict_submit(item=item, reviewer=bob, verdict="overturn", reason="known_benign")
    with pytest.raises(services.ItemConflict):
        services.review_item_claim(item=item, reviewer=bob)
    assert not Verdict.objects.exists() and not Label.objects.exists()


def test_decided_item_cannot_be_decided_again(alice, bob):
    item = ReviewItemFactory()
    services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    for who in (alice, bob):
        with pytest.raises(services.ItemConflict, match="already been decided"):
            services.verdict_submit(
                item=ReviewItem.objects.get(pk=item.pk), reviewer=who, verdict="overturn", reason="known_benign"
            )
    assert Verdict.objects.count() == 1 and Label.objects.get().is_threat is True


def test_expired_claim_can_be_taken_over(alice, bob):
    item = ReviewItemFactory()
    services.review_item_claim(item=item, reviewer=alice)
    ReviewItem.objects.filter(pk=item.pk).update(claim_expires_at=timezone.now() - timedelta(seconds=1))
    services.verdict_submit(item=item, reviewer=bob, verdict="overturn", reason="known_benign")
    assert Verdict.objects.get().reviewer == bob


def test_expire_claims_returns_items_to_queue(alice):
    item = ReviewItemFactory()
    services.review_item_claim(item=item, reviewer=alice)
    assert services.review_claims_expire() == 0
    ReviewItem.objects.filter(pk=item.pk).update(claim_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.review_claims_expire() == 1
    item.refresh_from_db()
    assert item.state == "open" and item.claimed_by is None


def test_claim_next_hands_out_highest_priority_and_different_items(alice, bob):
    low = ReviewItemFactory(priority=1.2)
    high = ReviewItemFactory(priority=3.9)
    mid = ReviewItemFactory(priority=2.5)
    a = services.review_item_claim_next(reviewer=alice)
    b = services.review_item_claim_next(reviewer=bob)
    assert (a.pk, b.pk) == (high.pk, mid.pk)
    assert services.review_item_claim_next(reviewer=alice).pk == high.pk  # your own claim first
    services.verdict_submit(item=a, reviewer=alice, verdict="approve", reason="confirmed_attack")
    assert services.review_item_claim_next(reviewer=alice).pk == low.pk
    assert services.review_item_claim_next(reviewer=alice).pk == low.pk
    services.verdict_submit(item=low, reviewer=alice, verdict="approve", reason="confirmed_attack")
    assert services.review_item_claim_next(reviewer=alice) is None


def test_release_only_by_holder(alice, bob):
    item = ReviewItemFactory()
    services.review_item_claim(item=item, reviewer=alice)
    with pytest.raises(services.ItemConflict):
        services.review_item_release(item=item, reviewer=bob)
    services.review_item_release(item=item, reviewer=alice)
    item.refresh_from_db()
    assert item.state == "open"


def test_unknown_verdict_or_reason_is_refused(alice):
    item = ReviewItemFactory()
    with pytest.raises(services.ServiceError):
        services.verdict_submit(item=item, reviewer=alice, verdict="maybe", reason="other")
    with pytest.raises(services.ServiceError):
        services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="because")
    item.refresh_from_db()
    assert item.state == "open"
