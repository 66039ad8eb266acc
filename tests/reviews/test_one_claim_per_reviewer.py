"""One claim per reviewer: claim-next, explicit claims, verdicts and undo never leave a reviewer
holding two items, on SQLite as on PostgreSQL (make test runs this file on both). An escalation an
admin is working on counts as their held item."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from reviews import services
from reviews.choices import HELD_STATES, ReviewState
from reviews.models import AuditEntry, Label, ReviewItem
from reviews.roles import ADMINS
from tests.concurrency import run_concurrently
from tests.conftest import _user
from tests.factories import ReviewItemFactory, SourceFactory

pytestmark = pytest.mark.django_db


def held_by(user) -> list[int]:
    return sorted(ReviewItem.objects.filter(state=ReviewState.CLAIMED, claimed_by=user).values_list("pk", flat=True))


def test_claim_next_twice_returns_the_same_item(alice):
    ReviewItemFactory.create_batch(3)
    first = services.review_item_claim_next(reviewer=alice)
    assert services.review_item_claim_next(reviewer=alice).pk == first.pk
    assert held_by(alice) == [first.pk]


def test_claiming_another_item_puts_the_held_one_back_in_the_queue(alice, bob):
    a, b = ReviewItemFactory.create_batch(2)
    services.review_item_claim(item=a, reviewer=alice)
    services.review_item_claim(item=b, reviewer=alice)
    assert held_by(alice) == [b.pk]
    a.refresh_from_db()
    assert (a.state, a.claimed_by_id, a.claim_expires_at) == (ReviewState.OPEN, None, None)
    release = AuditEntry.objects.get(verb="item.release", object_id=str(a.pk))
    assert release.actor == alice and release.after == {"reason": f"claimed item {b.pk} instead"}
    # What went back is free for others at once.
    assert services.review_item_claim_next(reviewer=bob).pk == a.pk


def test_an_expired_claim_goes_back_to_the_queue_when_the_reviewer_asks_for_the_next(alice):
    low = ReviewItemFactory(priority=1.0)
    high = ReviewItemFactory(priority=3.0)
    services.review_item_claim(item=low, reviewer=alice)
    ReviewItem.objects.filter(pk=low.pk).update(claim_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.review_item_claim_next(reviewer=alice).pk == high.pk
    assert held_by(alice) == [high.pk]
    assert ReviewItem.objects.get(pk=low.pk).state == ReviewState.OPEN


def test_claim_next_for_another_source_exchanges_the_claim(alice):
    vpn, idp = SourceFactory(), SourceFactory()
    held = ReviewItemFactory(event__source=vpn)
    other = ReviewItemFactory(event__source=idp)
    services.review_item_claim(item=held, reviewer=alice)
    assert services.review_item_claim_next(reviewer=alice, source=vpn).pk == held.pk
    assert services.review_item_claim_next(reviewer=alice, source=idp).pk == other.pk
    assert held_by(alice) == [other.pk]


def test_deciding_an_item_with_someone_elses_expired_claim_while_holding_one(alice, bob):
    mine, stale = ReviewItemFactory.create_batch(2)
    services.review_item_claim(item=stale, reviewer=bob)
    ReviewItem.objects.filter(pk=stale.pk).update(claim_expires_at=timezone.now() - timedelta(seconds=1))
    services.review_item_claim(item=mine, reviewer=alice)
    services.verdict_submit(item=stale, reviewer=alice, verdict="overturn", reason="known_benign")
    stale.refresh_from_db()
    assert stale.state == ReviewState.DECIDED and stale.claimed_by == alice
    assert held_by(alice) == [mine.pk] and held_by(bob) == []


def test_undo_takes_the_item_back_and_returns_the_next_one_to_the_queue(alice):
    first, second = ReviewItemFactory(priority=3.0), ReviewItemFactory(priority=2.0)
    assert services.review_item_claim_next(reviewer=alice).pk == first.pk
    verdict = services.verdict_submit(item=first, reviewer=alice, verdict="approve", reason="confirmed_attack")
    assert services.review_item_claim_next(reviewer=alice).pk == second.pk  # what the console does after a verdict
    services.verdict_undo(verdict=verdict, reviewer=alice)
    assert held_by(alice) == [first.pk]
    assert ReviewItem.objects.get(pk=second.pk).state == ReviewState.OPEN


def test_the_database_refuses_a_second_claim_whatever_the_code_does(alice):
    a, b = ReviewItemFactory.create_batch(2)
    services.review_item_claim(item=a, reviewer=alice)
    with pytest.raises(IntegrityError), transaction.atomic():
        ReviewItem.objects.filter(pk=b.pk).update(state=ReviewState.CLAIMED, claimed_by=alice)


@pytest.mark.django_db(transaction=True)
def test_parallel_claim_next_calls_of_one_reviewer_hand_out_one_item(alice, bob):
    """Threads with their own connections: on PostgreSQL the index makes the losers start over;
    on SQLite the IMMEDIATE transactions queue them behind the winner. Twenty rounds, because
    the race this guards against (a call that sees no claim, then finds the claim a parallel call
    has just committed) needs the calls to interleave just so."""
    ReviewItemFactory.create_batch(45)
    callers = (alice, bob) * 4
    for round_ in range(20):
        results, errors = run_concurrently([lambda u=user: services.review_item_claim_next(reviewer=u) for user in callers])
        assert errors == [None] * len(callers)
        for user in (alice, bob):
            handed = {r.pk for r, u in zip(results, callers, strict=True) if u == user}
            assert len(handed) == 1 and held_by(user) == sorted(handed), (round_, user.username, handed, held_by(user))
            # Decided, so the next round races for new items.
            services.verdict_submit(
                item=ReviewItem.objects.get(pk=held_by(user)[0]), reviewer=user, verdict="approve", reason="confirmed_attack"
            )


# ------------------------------------------------------------------ an admin's escalation is a held item


def holds(user) -> list[int]:
    """Items the user holds in either held state: a claim, or an escalation they are working on."""
    return sorted(ReviewItem.objects.filter(state__in=HELD_STATES, claimed_by=user).values_list("pk", flat=True))


def escalation(alice, bob, **kw) -> ReviewItem:
    item = ReviewItemFactory(required_verdicts=2, **kw)
    services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    services.verdict_submit(item=item, reviewer=bob, verdict="overturn", reason="known_benign")
    item.refresh_from_db()
    assert item.state == ReviewState.ESCALATED and item.claimed_by is None
    return item


def test_claiming_another_item_lets_go_of_the_admins_escalation_which_stays_escalated(alice, bob, carol):
    esc = escalation(alice, bob, priority=1.0)
    ordinary = ReviewItemFactory(priority=3.9)
    assert services.review_item_claim_next(reviewer=carol).pk == esc.pk  # escalations first
    assert holds(carol) == [esc.pk] and ReviewItem.objects.get(pk=esc.pk).state == ReviewState.ESCALATED
    services.review_item_claim(item=ordinary, reviewer=carol)
    esc.refresh_from_db()
    assert (esc.state, esc.claimed_by_id, esc.claim_expires_at) == (ReviewState.ESCALATED, None, None)
    assert holds(carol) == [ordinary.pk]
    release = AuditEntry.objects.get(verb="item.release", object_id=str(esc.pk))
    assert release.after == {"reason": f"claimed item {ordinary.pk} instead"}
    assert services.review_item_claim_next(reviewer=carol).pk == ordinary.pk  # the held item, not the escalation


def test_claim_next_for_another_source_lets_go_of_an_escalation_held_elsewhere(alice, bob, carol):
    vpn, idp = SourceFactory(), SourceFactory()
    esc = escalation(alice, bob, event__source=vpn)
    other = ReviewItemFactory(event__source=idp)
    assert services.review_item_claim_next(reviewer=carol).pk == esc.pk
    assert services.review_item_claim_next(reviewer=carol, source=idp).pk == other.pk
    assert holds(carol) == [other.pk]
    assert ReviewItem.objects.get(pk=esc.pk).state == ReviewState.ESCALATED


def test_the_database_refuses_an_escalation_held_next_to_a_claim(alice, bob, carol):
    esc = escalation(alice, bob)
    ordinary = ReviewItemFactory()
    services.review_item_claim(item=ordinary, reviewer=carol)
    with pytest.raises(IntegrityError), transaction.atomic():
        ReviewItem.objects.filter(pk=esc.pk).update(claimed_by=carol, claim_expires_at=timezone.now() + timedelta(minutes=5))


def test_an_admin_decides_an_escalation_from_the_queue_and_keeps_the_item_they_hold(alice, bob, carol):
    esc = escalation(alice, bob)
    ordinary = ReviewItemFactory()
    services.review_item_claim(item=ordinary, reviewer=carol)
    services.verdict_submit(item=esc, reviewer=carol, verdict="overturn", reason="known_benign")
    esc.refresh_from_db()
    assert esc.state == ReviewState.DECIDED
    assert holds(carol) == [ordinary.pk]


def test_undoing_an_admins_verdict_holds_the_item_again_as_an_escalation(alice, bob, carol):
    esc = escalation(alice, bob, priority=1.0)
    nxt = ReviewItemFactory(priority=0.5)
    assert services.review_item_claim_next(reviewer=carol).pk == esc.pk
    verdict = services.verdict_submit(item=esc, reviewer=carol, verdict="overturn", reason="known_benign")
    assert services.review_item_claim_next(reviewer=carol).pk == nxt.pk  # what the console does after a verdict
    item = services.verdict_undo(verdict=verdict, reviewer=carol)
    assert (item.state, item.claimed_by, item.claim_live) == (ReviewState.ESCALATED, carol, True)
    assert holds(carol) == [esc.pk] and ReviewItem.objects.get(pk=nxt.pk).state == ReviewState.OPEN
    assert not Label.objects.filter(event_id=esc.event_id).exists()
    assert AuditEntry.objects.filter(verb="verdict.undo", object_id=str(esc.pk)).get().after == {"state": "escalated"}
    # Another admin is kept out while carol holds it; once she lets go it waits for any admin again.
    erin = _user("erin", ADMINS)
    with pytest.raises(services.ItemConflict, match="being decided by carol"):
        services.verdict_submit(item=esc, reviewer=erin, verdict="approve", reason="confirmed_attack")
    services.review_item_release(item=esc, reviewer=carol)
    assert ReviewItem.objects.get(pk=esc.pk).state == ReviewState.ESCALATED
    assert services.review_item_claim_next(reviewer=erin).pk == esc.pk


@pytest.mark.django_db(transaction=True)
def test_parallel_claim_next_calls_of_one_admin_hand_out_one_escalation(alice, bob, carol):
    """An admin's escalation is their one held item, so their parallel calls agree as a reviewer's
    do, escalations first."""
    for _ in range(6):
        escalation(alice, bob)
    ReviewItemFactory.create_batch(3, priority=3.9)
    for round_ in range(6):
        results, errors = run_concurrently([lambda: services.review_item_claim_next(reviewer=carol) for _ in range(6)])
        assert errors == [None] * 6
        handed = {r.pk for r in results}
        assert len(handed) == 1 and holds(carol) == sorted(handed), (round_, handed, holds(carol))
        item = ReviewItem.objects.get(pk=handed.pop())
        assert item.state == ReviewState.ESCALATED
        services.verdict_submit(item=item, reviewer=carol, verdict="approve", reason="confirmed_attack")
