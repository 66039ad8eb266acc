"""Second opinions, undo within the window, bulk and cluster decisions."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from reviews import selectors, services
from reviews.models import AuditEntry, Label, ReviewItem, Verdict
from tests.conftest import PASSWORD
from tests.factories import EventFactory, ReviewItemFactory, SourceFactory

pytestmark = pytest.mark.django_db


def four_eyes_item(**kw):
    return ReviewItemFactory(required_verdicts=2, **kw)


def test_four_eyes_needs_two_agreeing_reviewers(alice, bob):
    item = four_eyes_item()
    services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    item.refresh_from_db()
    assert item.state == "open" and item.claimed_by is None and not Label.objects.exists()
    with pytest.raises(services.ItemConflict, match="second reviewer"):
        services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    assert services.review_item_claim_next(reviewer=alice) is None  # not handed back to the first reviewer
    assert services.review_item_claim_next(reviewer=bob).pk == item.pk
    services.verdict_submit(item=item, reviewer=bob, verdict="approve", reason="policy_violation")
    item.refresh_from_db()
    assert item.state == "decided" and Label.objects.get(event=item.event).is_threat is True
    assert list(AuditEntry.objects.filter(object_id=str(item.pk)).order_by("pk").values_list("verb", flat=True)) == [
        "item.first_opinion",
        "item.claim",
        "item.decide",
    ]


def test_disagreement_escalates_and_only_an_admin_decides(alice, bob, carol):
    item = four_eyes_item()
    services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    services.verdict_submit(item=item, reviewer=bob, verdict="overturn", reason="known_benign")
    item.refresh_from_db()
    assert item.state == "escalated" and not Label.objects.exists()
    reviewer3 = type(alice).objects.create_user("dave")
    reviewer3.groups.add(*alice.groups.all())
    item.source.reviewers.add(reviewer3)
    with pytest.raises(services.ItemConflict, match="escalated"):
        services.verdict_submit(item=item, reviewer=reviewer3, verdict="overturn", reason="known_benign")
    # One of the two who disagreed is told that an admin outside the disagreement decides, not
    # "another admin", since a reviewer is not one.
    with pytest.raises(services.ItemConflict, match="an admin who gave neither must decide"):
        services.review_item_claim(item=item, reviewer=alice)
    services.verdict_submit(item=item, reviewer=carol, verdict="overturn", reason="model_error")
    item.refresh_from_db()
    assert item.state == "decided" and Label.objects.get(event=item.event).is_threat is False


def test_undo_within_window_reopens_for_the_reviewer_and_removes_the_label(alice, bob):
    item = ReviewItemFactory()
    verdict = services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    with pytest.raises(services.ItemConflict, match="Only the reviewer"):
        services.verdict_undo(verdict=verdict, reviewer=bob)
    item = services.verdict_undo(verdict=verdict, reviewer=alice)
    assert item.state == "claimed" and item.claimed_by == alice
    assert not Label.objects.exists()
    item.event.refresh_from_db()
    assert item.event.status == "queued"
    with pytest.raises(services.ItemConflict, match="no longer be undone"):
        services.verdict_undo(verdict=Verdict.objects.get(pk=verdict.pk), reviewer=alice)
    # and the reviewer can decide again
    services.verdict_submit(item=item, reviewer=alice, verdict="overturn", reason="known_benign")
    assert Label.objects.get(event=item.event).is_threat is False
    assert (
        Verdict.objects.filter(item=item).count() == 2 and Verdict.objects.filter(item=item, undone_at__isnull=False).count() == 1
    )
    assert AuditEntry.objects.filter(verb="verdict.undo", object_id=str(item.pk)).count() == 1


def test_undo_after_the_window_is_refused(alice, settings):
    item = ReviewItemFactory()
    verdict = services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    Verdict.objects.filter(pk=verdict.pk).update(created_at=timezone.now() - timedelta(seconds=settings.SECAI_UNDO_SECONDS + 1))
    with pytest.raises(services.ItemConflict, match="no longer be undone"):
        services.verdict_undo(verdict=Verdict.objects.get(pk=verdict.pk), reviewer=alice)
    assert Label.objects.filter(event=item.event).exists()


def test_undo_is_refused_once_an_admin_has_decided_the_escalation(alice, bob, carol):
    item = four_eyes_item()
    first = services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    services.verdict_submit(item=item, reviewer=bob, verdict="overturn", reason="known_benign")
    services.verdict_submit(item=item, reviewer=carol, verdict="overturn", reason="model_error")
    with pytest.raises(services.ItemConflict, match="carol has given a verdict on this item since yours"):
        services.verdict_undo(verdict=first, reviewer=alice)
    item.refresh_from_db()
    assert item.state == "decided" and item.decided_at is not None
    assert Label.objects.get(event=item.event).is_threat is False
    assert not Verdict.objects.filter(item=item, undone_at__isnull=False).exists()


def test_first_opinion_cannot_be_undone_after_the_second_reviewer_decided(alice, bob):
    item = four_eyes_item()
    first = services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    second = services.verdict_submit(item=item, reviewer=bob, verdict="approve", reason="policy_violation")
    with pytest.raises(services.ItemConflict, match="bob has given a verdict"):
        services.verdict_undo(verdict=first, reviewer=alice)
    item.refresh_from_db()
    assert item.state == "decided" and Label.objects.get(event=item.event).verdict_id == second.pk
    # The reviewer whose verdict closed the item may still take it back.
    item = services.verdict_undo(verdict=second, reviewer=bob)
    assert item.state == "claimed" and item.claimed_by == bob and not Label.objects.exists()


def test_undo_does_not_take_an_item_out_of_another_reviewers_hands(alice, bob):
    item = four_eyes_item()
    first = services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    services.review_item_claim(item=item, reviewer=bob)
    with pytest.raises(services.ItemConflict, match="bob holds this item now"):
        services.verdict_undo(verdict=first, reviewer=alice)
    item.refresh_from_db()
    assert item.state == "claimed" and item.claimed_by == bob
    # Once bob lets go, the first opinion can be taken back within the window.
    services.review_item_release(item=item, reviewer=bob)
    item = services.verdict_undo(verdict=first, reviewer=alice)
    assert item.state == "claimed" and item.claimed_by == alice


def test_bulk_decision_skips_items_held_by_others(alice, bob):
    items = ReviewItemFactory.create_batch(4)
    services.review_item_claim(item=items[0], reviewer=bob)
    result = services.verdict_submit_bulk(
        item_ids=[i.pk for i in items], reviewer=alice, verdict="overturn", reason="known_benign"
    )
    assert result.decided == 3 and [s["id"] for s in result.skipped] == [items[0].pk]
    assert Label.objects.filter(is_threat=False).count() == 3
    assert ReviewItem.objects.get(pk=items[0].pk).state == "claimed"


def test_clusters_group_near_identical_items(carol):
    src = SourceFactory()
    same = {"bytes": 1000, "proto": "udp", "admin": False, "note": "x"}
    for i in range(4):
        ReviewItemFactory(
            event=EventFactory(source=src, attributes={**same, "bytes": 1000 + i}, entity=f"h{i}")
        )  # same on a log scale
    ReviewItemFactory(event=EventFactory(source=src, attributes={**same, "proto": "tcp"}))
    ReviewItemFactory(event=EventFactory(source=src, attributes={**same, "bytes": 5}))
    clusters = selectors.open_item_clusters(filters=selectors.QueueFilters(), viewer=carol)
    assert [c["size"] for c in clusters] == [4]
    assert clusters[0]["entities"] == ["h0", "h1", "h2", "h3"]


def test_keyset_pages_cover_the_queue_once_in_order(carol):
    items = [ReviewItemFactory(priority=2 + (i % 7) / 10) for i in range(23)]
    seen, after = [], ""
    while True:
        rows, after = selectors.review_queue_page(filters=selectors.QueueFilters(), viewer=carol, after=after, size=5)
        seen.extend(rows)
        if not after:
            break
    assert sorted(r.pk for r in seen) == sorted(i.pk for i in items) and len(seen) == 23
    assert [(-r.priority, r.created_at, r.pk) for r in seen] == sorted((-r.priority, r.created_at, r.pk) for r in seen)


def test_filters_and_counts(carol):
    ReviewItemFactory(score=0.95, proposed_action="deny", event=EventFactory(entity="10.0.0.9", external_id="abc-1"))
    ReviewItemFactory(score=0.6, proposed_action="step_up", event=EventFactory(entity="10.0.0.8"))
    ReviewItemFactory(score=0.7, proposed_action="step_up", state="decided")
    f = selectors.QueueFilters.from_query({"min_score": "0.65", "state": "all"})
    assert {i.score for i in selectors.review_queue_filtered(filters=f, viewer=carol)} == {0.95, 0.7}
    assert [
        i.event.entity
        for i in selectors.review_queue_filtered(filters=selectors.QueueFilters.from_query({"q": "abc-1"}), viewer=carol)
    ] == ["10.0.0.9"]
    counts = selectors.review_queue_counts(filters=selectors.QueueFilters.from_query({"action": "step_up"}), viewer=carol)
    assert counts["state"] == {"open": 1, "decided": 1, "active": 1, "all": 2} and counts["action"] == {"step_up": 1}
    junk = selectors.QueueFilters.from_query({"min_score": "nan", "state": "<script>", "action": "nuke", "model_version": "x"})
    assert junk.min_score is None and junk.state == "open" and junk.action == "" and junk.model_version is None


def test_bulk_in_the_console_confirms_the_count_then_decides(client, alice):
    for _ in range(3):
        ReviewItemFactory(event=EventFactory(entity="scanner-7"))
    other = ReviewItemFactory(event=EventFactory(entity="someone"))
    client.login(username="alice", password=PASSWORD)
    confirm = client.post(reverse("reviews:bulk"), {"entity": "scanner-7", "verdict": "overturn"})
    assert confirm.status_code == 200 and "3 items</strong> will be overturned" in confirm.content.decode()
    assert not Verdict.objects.exists()
    ids = [str(i) for i in confirm.context["ids"]]
    done = client.post(
        reverse("reviews:bulk"), {"confirm": "yes", "ids": ids, "verdict": "overturn", "reason": "known_benign"}, follow=True
    )
    assert "Bulk overturn: 3 item(s) decided" in done.content.decode()
    assert Verdict.objects.count() == 3 and ReviewItem.objects.get(pk=other.pk).state == "open"
    # Going back and confirming again: the reviewer's own decisions are not "someone else's".
    again = client.post(
        reverse("reviews:bulk"), {"confirm": "yes", "ids": ids, "verdict": "overturn", "reason": "known_benign"}, follow=True
    )
    page = again.content.decode()
    assert "Bulk overturn: 0 item(s) decided; 3 skipped (already decided or held by another reviewer)" in page
    assert "someone else" not in page and Verdict.objects.count() == 3


def test_a_refused_bulk_confirmation_stays_on_the_same_items_and_decides_nothing(client, alice):
    items = [ReviewItemFactory(event=EventFactory(entity="scanner-7")) for _ in range(3)]
    client.login(username="alice", password=PASSWORD)
    ids = [str(i.pk) for i in items]
    back = reverse("reviews:queue") + "?entity=scanner-7"
    refused = client.post(
        reverse("reviews:bulk"),
        {"confirm": "yes", "ids": ids, "verdict": "overturn", "reason": "confirmed_attack", "back": back, "scope": "scanners"},
    )
    assert refused.status_code == 200 and not Verdict.objects.exists()
    html = refused.content.decode()
    assert "Nothing was decided: reason must be one of" in html
    assert "3 items</strong> will be overturned (false positives): scanners." in html
    assert [str(i) for i in refused.context["ids"]] == ids and refused.context["back"] == back
    assert 'data-applies="approve" selected' in html  # the choice is kept; the page's script hides it for an overturn


def test_item_page_shows_history_and_similar_decisions(client, alice, bob):
    src = SourceFactory()
    old = ReviewItemFactory(event=EventFactory(source=src, entity="10.1.1.1", external_id="old-1"))
    services.verdict_submit(item=old, reviewer=bob, verdict="overturn", reason="known_benign")
    new = ReviewItemFactory(event=EventFactory(source=src, entity="10.1.1.1", external_id="new-1"))
    client.login(username="alice", password=PASSWORD)
    html = client.get(reverse("reviews:item", args=[new.pk])).content.decode()
    assert "old-1" in html and "overturn (bob)" in html  # entity history
    assert 'id="similar"' in html and f"#{old.pk}" in html and "known benign activity" in html


def test_counts_agree_with_the_list_right_after_a_bulk_decision(client, alice, django_capture_on_commit_callbacks):
    items = [ReviewItemFactory(event=EventFactory(entity="tcp:rje")) for _ in range(3)]
    client.force_login(alice)
    before = client.get("/", {"entity": "tcp:rje"}).context["counts"]
    assert before["state"]["open"] == 3  # now cached
    with django_capture_on_commit_callbacks(execute=True):
        done = services.verdict_submit_bulk(
            item_ids=[i.pk for i in items], reviewer=alice, verdict="overturn", reason="known_benign"
        )
    assert done.decided == 3
    after = client.get("/", {"entity": "tcp:rje"}).context["counts"]
    assert after["state"].get("open", 0) == 0 and after["state"]["decided"] == 3
