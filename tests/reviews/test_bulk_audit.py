"""A bulk decision reads as one action in the audit trail: its entries share a bulk id and the
number of items chosen, a summary entry says what became of each, and the audit view filters by it."""

import pytest
from django.urls import reverse

from reviews import services
from reviews.models import AuditEntry
from tests.conftest import PASSWORD
from tests.factories import ReviewItemFactory

pytestmark = pytest.mark.django_db


def test_bulk_entries_share_an_id_and_the_count(alice, bob):
    items = ReviewItemFactory.create_batch(4)
    services.review_item_claim(item=items[0], reviewer=bob)
    result = services.verdict_submit_bulk(
        item_ids=[i.pk for i in items], reviewer=alice, verdict="overturn", reason="known_benign"
    )
    decide = AuditEntry.objects.filter(verb="item.decide").order_by("pk")
    assert decide.count() == 3
    assert {e.after["bulk"]["id"] for e in decide} == {result.bulk_id} and {e.after["bulk"]["count"] for e in decide} == {4}
    summary = AuditEntry.objects.get(verb="bulk.decide")
    assert (summary.object_type, summary.object_id, summary.actor) == ("bulk", result.bulk_id, alice)
    assert summary.after["items"] == [i.pk for i in items] and summary.after["skipped"] == [items[0].pk]
    assert (summary.after["decided"], summary.after["first_opinions"], summary.after["verdict"]) == (3, 0, "overturn")
    # A second bulk decision gets its own id; a single verdict none.
    other = services.verdict_submit_bulk(item_ids=[items[0].pk], reviewer=bob, verdict="approve", reason="confirmed_attack")
    assert other.bulk_id != result.bulk_id
    single = ReviewItemFactory()
    services.verdict_submit(item=single, reviewer=alice, verdict="approve", reason="confirmed_attack")
    assert "bulk" not in AuditEntry.objects.get(verb="item.decide", object_id=str(single.pk)).after


def test_audit_view_marks_and_filters_a_bulk_decision(client, api, alice, carol):
    items = ReviewItemFactory.create_batch(3)
    loner = ReviewItemFactory()
    services.verdict_submit(item=loner, reviewer=alice, verdict="approve", reason="confirmed_attack")
    result = services.verdict_submit_bulk(
        item_ids=[i.pk for i in items], reviewer=alice, verdict="overturn", reason="known_benign"
    )
    assert client.login(username="carol", password=PASSWORD)
    html = client.get(reverse("reviews:audit")).content.decode()
    assert html.count(f"bulk {result.bulk_id[:8]} · 3 items") == 4  # three items and the summary
    filtered = client.get(reverse("reviews:audit"), {"bulk": result.bulk_id})
    shown = [row["entry"] for row in filtered.context["rows"]]
    assert sorted(e.verb for e in shown) == ["bulk.decide", "item.decide", "item.decide", "item.decide"]
    assert str(loner.pk) not in {e.object_id for e in shown}
    body = api(carol).get("/api/v1/audit/", {"bulk": result.bulk_id}).json()
    assert len(body["results"]) == 4
    # The item page's own trail says the verdict was part of a bulk decision.
    page = client.get(reverse("reviews:item", args=[items[0].pk])).content.decode()
    assert 'alice: item.decide <span class="badge"' in page and "bulk of 3" in page


def test_bulk_decision_api_returns_the_bulk_id(api, alice):
    items = ReviewItemFactory.create_batch(2)
    resp = api(alice).post(
        "/api/v1/review-items/bulk-decision/",
        {"ids": [i.pk for i in items], "verdict": "overturn", "reason": "known_benign"},
        format="json",
    )
    bulk_id = resp.json()["bulk_id"]
    assert AuditEntry.objects.filter(after__bulk__id=bulk_id, verb="item.decide").count() == 2
