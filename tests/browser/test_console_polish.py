"""Findings of a user test, in the browser: escalations reach admins, second opinions are blind,
skip moves on, groups say what sets them apart, expired claims read as open, bulk decisions read
as one action in the audit view, and similar verdicts give a readable similarity."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from reviews import services
from reviews.models import ReviewItem, Verdict
from tests.browser.helpers import claim_next, fill_decision, item_id_of, item_url, messages_of, submit_decision
from tests.factories import EventFactory, ReviewItemFactory, SourceFactory

pytestmark = pytest.mark.browser


def escalate(item, alice, bob):
    services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    services.verdict_submit(item=item, reviewer=bob, verdict="overturn", reason="known_benign")


def test_admin_is_prompted_for_escalations_and_claim_next_takes_them_first(alice, bob, carol, login):
    ordinary = ReviewItemFactory(priority=3.99)
    first = ReviewItemFactory(priority=2.9, required_verdicts=2)
    second = ReviewItemFactory(priority=2.2, required_verdicts=2)
    for item in (first, second):
        escalate(item, alice, bob)

    page = login(carol)
    assert page.locator("#escalations-link .badge").inner_text() == "2"
    assert "2 escalated items wait for an admin" in page.locator("#escalations-notice").inner_text()
    with page.expect_navigation():
        page.keyboard.press("n")
    assert item_id_of(page) == first.pk
    assert page.locator("#item-state").inner_text() == "escalated"
    assert "Your verdict as admin is final." in page.locator("#decision-card").inner_text()
    page.keyboard.press("o")
    page.keyboard.press("3")  # model error
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert item_id_of(page) == second.pk, "after an escalation the admin gets the next escalation, not an ordinary item"
    assert page.locator("#escalations-link .badge").inner_text() == "0"  # the one in hand is not waiting
    fill_decision(page, verdict="Approve", reason="confirmed attack")
    submit_decision(page)
    assert item_id_of(page) == ordinary.pk
    assert not page.locator("#escalations-notice").count()


def test_the_second_opinion_is_blind_until_the_reviewers_disagree(alice, bob, login):
    item = ReviewItemFactory(required_verdicts=2)
    note = "Same beacon as INC-4411; confirmed with the owner."
    a = login(alice)
    a.goto(item_url(item.pk))
    fill_decision(a, verdict="Approve", reason="suspicious pattern", note=note)
    submit_decision(a)

    b = login(bob)
    b.goto(item_url(item.pk))
    card = b.locator("#verdicts-card").inner_text()
    assert "alice" not in card and note not in card and "Approve" not in card
    assert "1 verdict by another reviewer, hidden until the item is decided or escalated" in card
    fill_decision(b, verdict="Overturn", reason="known benign activity")
    submit_decision(b)
    assert "escalated to an admin" in " ".join(messages_of(b, "warning"))

    b.goto(item_url(item.pk))
    card = b.locator("#verdicts-card").inner_text()
    assert "Approve by alice, suspicious pattern" in card and note in card  # escalated: both opinions are in


def test_skip_hands_the_next_other_item_and_not_the_skipped_one_again(alice, bob, login):
    first = ReviewItemFactory(priority=3.9)
    second = ReviewItemFactory(priority=2.5)
    page = login(alice)
    assert claim_next(page) == first.pk
    # Release, then next: the same item comes back (release gives it to everyone, this reviewer too).
    with page.expect_navigation():
        page.keyboard.press("r")
    with page.expect_navigation():
        page.keyboard.press("n")
    assert item_id_of(page) == first.pk
    with page.expect_navigation():
        page.keyboard.press("s")
    assert item_id_of(page) == second.pk
    assert messages_of(page, "info")[0].startswith(f"Skipped item {first.pk}: it is back in the queue for others")
    with page.expect_navigation():
        page.get_by_role("button", name="Skip and take next").click()
    assert "/items/" not in page.url
    assert "the 2 item(s) you skipped are left to others" in messages_of(page, "info")[-1]
    assert set(ReviewItem.objects.values_list("state", flat=True)) == {"open"}

    other = login(bob)
    assert claim_next(other) == first.pk


def test_near_identical_groups_show_what_sets_them_apart(alice, login):
    src = SourceFactory()
    base = {"bytes": 1000, "proto": "tcp", "admin": False, "note": "n"}
    for i in range(3):
        ReviewItemFactory(
            score=0.8 + i / 100, event=EventFactory(source=src, attributes={**base, "bytes": 1000 + i}, entity=f"h{i}")
        )
    for _ in range(2):
        ReviewItemFactory(score=0.7, event=EventFactory(source=src, attributes={**base, "proto": "udp"}, entity="dns-1"))
    page = login(alice)
    page.goto("/clusters/")
    rows = page.locator("#clusters tr.cluster")
    assert rows.count() == 2
    big, small = rows.nth(0), rows.nth(1)
    assert big.locator(".defining").inner_text().startswith("proto=tcp")
    assert small.locator(".defining").inner_text().startswith("proto=udp")
    assert "bytes=1000–1002" in big.locator(".defining").inner_text()
    assert big.locator(".scores").inner_text() == "0.800–0.820" and small.locator(".scores").inner_text() == "0.700"
    assert big.locator(".entities").inner_text() == "3: h0, h1, h2"


def test_an_expired_claim_shows_as_expired_and_open(alice, bob, login):
    item = ReviewItemFactory()
    services.review_item_claim(item=item, reviewer=alice)
    ReviewItem.objects.filter(pk=item.pk).update(claim_expires_at=timezone.now() - timedelta(minutes=5))
    page = login(bob)
    page.goto(item_url(item.pk))
    assert page.locator("#item-state").inner_text() == "open"
    card = page.locator("#decision-card").inner_text()
    assert "Claimed by" not in card and "The claim of alice expired at" in card
    fill_decision(page, verdict="Overturn", reason="model error")
    submit_decision(page)
    assert Verdict.objects.get(item=item).reviewer == bob


def test_a_bulk_decision_reads_as_one_action_in_the_audit_view(alice, carol, login):
    items = [ReviewItemFactory(event=EventFactory(entity="scanner-3")) for _ in range(3)]
    ReviewItemFactory(event=EventFactory(entity="elsewhere"))
    page = login(alice)
    page.goto("/?entity=scanner-3")
    page.locator(".bulk-form select[name=verdict]").select_option("overturn")
    with page.expect_navigation():
        page.locator("#bulk-start").click()
    page.get_by_label("Reason").select_option("known_benign")
    with page.expect_navigation():
        page.locator("#bulk-confirm").click()

    admin = login(carol)
    admin.goto("/audit/")
    badges = admin.locator("#audit a.bulk")
    assert badges.count() == 4  # three items and the summary
    assert len(set(badges.all_inner_texts())) == 1 and badges.first.inner_text().endswith("· 3 items")
    with admin.expect_navigation():
        badges.first.click()
    verbs = admin.locator("#audit tbody tr td:nth-child(4) a.mono").all_inner_texts()
    assert sorted(verbs) == ["bulk.decide", "item.decide", "item.decide", "item.decide"]
    objects = admin.locator("#audit tbody").inner_text()
    assert all(f"reviews.reviewitem:{i.pk}" in objects for i in items)


def test_similar_verdicts_show_a_similarity_in_percent(alice, bob, login):
    src = SourceFactory()
    attrs = {"bytes": 512, "proto": "udp", "admin": False, "note": "n"}
    twin = ReviewItemFactory(event=EventFactory(source=src, attributes=attrs))
    other = ReviewItemFactory(event=EventFactory(source=src, attributes={**attrs, "bytes": 90_000, "proto": "tcp"}))
    for done in (twin, other):
        services.verdict_submit(item=done, reviewer=bob, verdict="overturn", reason="known_benign")
    item = ReviewItemFactory(event=EventFactory(source=src, attributes=attrs))
    page = login(alice)
    page.goto(item_url(item.pk))
    assert page.locator("#similarity-help").inner_text().startswith("Similarity: the share of attributes that match")
    rows = page.locator("#similar tbody tr, #similar tr:has(td)")
    first, second = rows.nth(0).locator("td").first.inner_text(), rows.nth(1).locator("td").first.inner_text()
    assert first == "100% (3 of 3 equal)"
    assert second.endswith("(1 of 3 equal)") and 0 <= int(second.split("%")[0]) < 50
