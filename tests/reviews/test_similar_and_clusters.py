"""What the item page and the clusters page tell a reviewer about look-alike events: a similarity
between 0 and 100% that does not blow up with few decided items and counts a verdict at once,
and groups of near-identical items that say what sets each apart."""

import numpy as np
import pytest
from django.urls import reverse

from reviews import selectors, services
from tests.conftest import PASSWORD
from tests.factories import EventFactory, ReviewItemFactory, SourceFactory

pytestmark = pytest.mark.django_db

BASE = {"bytes": 1000, "proto": "tcp", "admin": False, "note": "n"}


def decided(src, reviewer, attrs, **kw):
    item = ReviewItemFactory(event=EventFactory(source=src, attributes=attrs, **kw))
    services.verdict_submit(item=item, reviewer=reviewer, verdict="overturn", reason="known_benign")
    return item


def test_similarity_is_a_share_between_0_and_1():
    X = np.log1p(np.array([[1000.0, 0.0], [1200.0, 0.0], [5.0, 1.0], [np.nan, 0.0]]))
    x = np.log1p(np.array([1000.0, 0.0]))
    sim, equal = selectors.attribute_similarity(x, X, ["tcp"], [["tcp"], ["tcp"], ["udp"], ["tcp"]])
    assert sim[0] == 1.0 and equal[0] == 3  # identical
    assert 0.9 < sim[1] < 1.0 and equal[1] == 2  # 1,200 bytes is close to 1,000 on a log scale
    assert sim[2] < 0.05 and equal[2] == 0  # near the far end of the pool on both numbers, another category
    assert sim[3] == pytest.approx(2 / 3) and equal[3] == 2  # a missing value matches nothing but a missing value
    assert ((sim >= 0) & (sim <= 1)).all()
    # A column nobody has a value for matches; one only the event has counts as different.
    none = np.full((2, 1), np.nan)
    both_missing, _ = selectors.attribute_similarity(np.array([np.nan]), none, [], np.empty((2, 0), dtype=object))
    only_event, _ = selectors.attribute_similarity(np.array([3.0]), none, [], np.empty((2, 0), dtype=object))
    assert both_missing.tolist() == [1.0, 1.0] and only_event.tolist() == [0.0, 0.0]


def test_item_page_shows_similarity_in_percent_with_few_decided_items(client, alice, bob):
    # Two decided items with almost no spread: the old distance, scaled by the pool's standard
    # deviation, read in the hundreds for the slightest difference.
    src = SourceFactory()
    same = decided(src, bob, BASE)
    near = decided(src, bob, {**BASE, "bytes": 1001, "admin": True})
    item = ReviewItemFactory(event=EventFactory(source=src, attributes=BASE))
    assert client.login(username="alice", password=PASSWORD)
    resp = client.get(reverse("reviews:item", args=[item.pk]))
    similar = resp.context["similar"]
    assert [s.verdict.item_id for s in similar] == [same.pk, near.pk]
    assert similar[0].percent == 100 and (similar[0].equal, similar[0].compared) == (3, 3)
    assert 0 <= similar[1].percent < 100 and similar[1].equal == 1
    html = resp.content.decode()
    assert '100% <span class="muted">(3 of 3 equal)</span>' in html
    assert 'id="similarity-help"' in html and "Similarity: the share of attributes that match" in html


def test_a_verdict_given_a_moment_ago_is_among_the_similar_at_once(client, alice, bob):
    src = SourceFactory()
    decided(src, bob, {**BASE, "proto": "udp"})
    twin_a = ReviewItemFactory(event=EventFactory(source=src, attributes=BASE))
    twin_b = ReviewItemFactory(event=EventFactory(source=src, attributes=BASE))
    assert client.login(username="alice", password=PASSWORD)
    client.get(reverse("reviews:item", args=[twin_b.pk]))  # builds and keeps the source's pool
    client.post(reverse("reviews:decide", args=[twin_a.pk]), {"verdict": "overturn", "reason": "known_benign"})
    similar = client.get(reverse("reviews:item", args=[twin_b.pk])).context["similar"]
    assert similar[0].verdict.item_id == twin_a.pk and similar[0].percent == 100


def test_undone_verdicts_and_undecided_items_are_not_similar_decisions(alice, bob):
    src = SourceFactory()
    kept = decided(src, bob, BASE)
    undone = ReviewItemFactory(event=EventFactory(source=src, attributes=BASE))
    verdict = services.verdict_submit(item=undone, reviewer=alice, verdict="approve", reason="confirmed_attack")
    item = ReviewItemFactory(event=EventFactory(source=src, attributes=BASE))
    assert {s.verdict.item_id for s in selectors.similar_decided_events(event=item.event)} == {kept.pk, undone.pk}
    services.verdict_undo(verdict=verdict, reviewer=alice)  # the pool kept in memory still has it
    assert [s.verdict.item_id for s in selectors.similar_decided_events(event=item.event)] == [kept.pk]


def test_clusters_say_what_sets_each_group_apart(alice):
    src = SourceFactory()
    for i in range(3):
        ReviewItemFactory(
            score=0.81 + i / 100, event=EventFactory(source=src, attributes={**BASE, "bytes": 1000 + i}, entity=f"h{i}")
        )
    for _ in range(2):
        ReviewItemFactory(score=0.9, event=EventFactory(source=src, attributes={**BASE, "proto": "udp"}, entity="dns-1"))
    clusters = {c["size"]: c for c in selectors.open_item_clusters(filters=selectors.QueueFilters(), viewer=alice)}
    tcp, udp = clusters[3], clusters[2]
    # bytes and admin are the same in both groups; proto is what tells them apart, so it comes first.
    assert tcp["defining"][0] == {"name": "proto", "value": "tcp", "share": 0.5, "blank": False}
    assert udp["defining"][0]["value"] == "udp"
    assert {a["name"]: a["value"] for a in tcp["defining"]} == {"proto": "tcp", "bytes": "1000–1002", "admin": "false"}
    assert (tcp["score_min"], tcp["score_max"]) == pytest.approx((0.81, 0.83)) and tcp["entity_count"] == 3
    assert udp["entities"] == ["dns-1"] and udp["entity_count"] == 1


def test_clusters_page_shows_the_defining_values_escaped(client, alice):
    src = SourceFactory()
    evil = "<img src=x onerror=alert(1)>"
    for proto in ("tcp", evil):
        for _ in range(2):
            ReviewItemFactory(event=EventFactory(source=src, attributes={**BASE, "proto": proto}))
    assert client.login(username="alice", password=PASSWORD)
    html = client.get(reverse("reviews:clusters")).content.decode()
    assert 'proto=<span class="v">tcp</span>' in html
    assert evil not in html and 'proto=<span class="v">&lt;img src=x onerror=alert(1)&gt;</span>' in html
    assert html.count('class="cluster"') == 2


def test_a_group_is_decided_in_bulk_by_its_key(client, alice):
    src = SourceFactory()
    group = [ReviewItemFactory(event=EventFactory(source=src, attributes={**BASE, "proto": "udp"})) for _ in range(3)]
    ReviewItemFactory(event=EventFactory(source=src, attributes=BASE))
    key = selectors.open_item_clusters(filters=selectors.QueueFilters(), viewer=alice)[0]["key"]
    assert client.login(username="alice", password=PASSWORD)
    confirm = client.post(reverse("reviews:bulk"), {"cluster": key, "verdict": "overturn"})
    assert sorted(confirm.context["ids"]) == sorted(i.pk for i in group)
    assert "3 items</strong> will be overturned" in confirm.content.decode()
