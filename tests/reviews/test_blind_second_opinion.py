"""A four-eyes item's first verdict stays hidden from other reviewers until the item is decided or
escalated, everywhere it could show: the item page, another item's entity history and similar
verdicts, the audit trail, and the API. Its author and admins see it."""

import json
import re

import pytest
from django.urls import reverse

from reviews import services
from tests.conftest import PASSWORD
from tests.factories import EventFactory, ReviewItemFactory, SourceFactory

pytestmark = pytest.mark.django_db

NOTE = "saw the same beacon from this host last week"


@pytest.fixture
def first_opinion(alice):
    """A four-eyes item alice has approved (the first opinion), and a second event of the same
    entity with the same attributes, so the first shows in its history and similar verdicts."""
    src = SourceFactory()
    attrs = {"bytes": 4242, "proto": "icmp", "admin": True, "note": "x"}
    item = ReviewItemFactory(required_verdicts=2, event=EventFactory(source=src, entity="host-9", attributes=attrs))
    services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="suspicious_pattern", note=NOTE)
    later = ReviewItemFactory(event=EventFactory(source=src, entity="host-9", attributes=attrs, external_id="later-1"))
    later.event.occurred_at = item.event.occurred_at.replace(year=2027)
    later.event.save()
    return item, later


def page(client, user, item) -> str:
    client.logout()
    assert client.login(username=user.username, password=PASSWORD)
    return client.get(reverse("reviews:item", args=[item.pk])).content.decode()


def text(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


def leaks(html: str) -> list[str]:
    # (The reason itself is one the decision form offers, so it is not looked for.)
    return [s for s in (NOTE, "by alice", "approve (alice)") if s in text(html)]


def test_the_second_reviewer_does_not_see_the_first_verdict_on_the_item_page(client, alice, bob, first_opinion):
    item, _ = first_opinion
    html = page(client, bob, item)
    assert leaks(html) == []
    assert "1 verdict by another reviewer, hidden until the item is decided or escalated" in html
    assert 'id="decision-form"' in html  # bob can still give the second opinion
    assert "four-eyes: 1 of 2 verdicts" in html


def test_the_first_reviewer_and_admins_see_it(client, alice, carol, first_opinion):
    item, _ = first_opinion
    mine = page(client, alice, item)
    assert "Approve by alice" in text(mine) and NOTE in mine and "blind-note" not in mine
    admin = page(client, carol, item)
    assert "Approve by alice, suspicious pattern" in text(admin) and NOTE in admin


def test_another_items_history_and_similar_verdicts_do_not_show_it(client, alice, bob, first_opinion):
    item, later = first_opinion
    html = page(client, bob, later)
    assert f'href="{reverse("reviews:item", args=[item.pk])}"' in html  # the event is in the history...
    assert "1 hidden until decided" in html  # ...its verdict is not
    assert leaks(html) == []
    assert 'id="similar"' not in html  # a pending first opinion is not a decision to compare with


def test_the_audit_trail_bob_can_reach_shows_no_verdict(client, api, alice, bob, carol, first_opinion):
    item, _ = first_opinion
    html = page(client, bob, item)
    assert "alice: item.first_opinion" in html and leaks(html) == []
    assert client.get(reverse("reviews:audit")).status_code == 403
    assert api(bob).get("/api/v1/audit/").status_code == 403
    # An admin's audit view has it all.
    client.logout()
    assert client.login(username="carol", password=PASSWORD)
    assert "suspicious_pattern" in client.get(reverse("reviews:audit")).content.decode()


def test_the_api_shows_no_first_verdict(api, bob, first_opinion):
    item, _ = first_opinion
    for path in (
        f"/api/v1/review-items/{item.pk}/",
        "/api/v1/review-items/?state=all",
        f"/api/v1/events/{item.event_id}/",
        "/api/v1/events/?entity=host-9",
    ):
        resp = api(bob).get(path)
        assert resp.status_code == 200, path
        body = json.dumps(resp.json())
        assert NOTE not in body and "suspicious_pattern" not in body and '"approve"' not in body, path
    assert api(bob).get(f"/api/v1/events/{item.event_id}/").json()["review"]["verdict"] is None


@pytest.mark.parametrize("second", ["approve", "overturn"], ids=["decided", "escalated"])
def test_it_shows_once_the_item_is_decided_or_escalated(client, alice, bob, first_opinion, second):
    item, later = first_opinion
    reason = "confirmed_attack" if second == "approve" else "known_benign"
    services.verdict_submit(item=item, reviewer=bob, verdict=second, reason=reason)
    item.refresh_from_db()
    assert item.state == ("decided" if second == "approve" else "escalated")
    html = page(client, bob, item)
    assert "Approve by alice" in text(html) and NOTE in html
    assert "approve (alice)" in page(client, bob, later)


def test_an_undone_verdict_stays_hidden_while_the_item_is_undecided(client, alice, bob):
    item = ReviewItemFactory()
    verdict = services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="suspicious_pattern", note=NOTE)
    services.verdict_undo(verdict=verdict, reviewer=alice)
    services.review_item_release(item=item, reviewer=alice)
    html = page(client, bob, item)
    assert leaks(html) == [] and "hidden until the item is decided" in html


@pytest.fixture
def appealed(alice, ingest):
    """An item alice decided (approve: the action stands), then reopened by the person's appeal."""
    from actions.services import action_types_seed, appeal_file

    src = SourceFactory()
    src.api_clients.add(ingest)
    action_types_seed(source=src)
    item = ReviewItemFactory(event=EventFactory(source=src, entity="host-7", proposed_action="deny"))
    services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="suspicious_pattern", note=NOTE)
    appeal, _ = appeal_file(
        source=src, external_id="ap-1", event_external_id=item.event.external_id, statement="it was me", actor=ingest
    )
    item.refresh_from_db()
    assert (item.state, item.kind) == ("open", "appeal")
    return item, appeal


def test_an_appeal_does_not_name_the_verdict_it_is_against_to_the_reviewer_deciding_it_again(client, alice, bob, carol, appealed):
    item, _ = appealed
    html = page(client, bob, item)
    assert 'id="appeal-' in html and "it was me" in html  # the appeal itself is shown
    assert "against an earlier verdict, hidden until the item is decided again" in html
    assert leaks(html) == [] and "against the verdict" not in html
    assert 'id="decision-form"' in html
    assert "against the verdict approve by alice" in page(client, alice, item)  # her own
    assert "against the verdict approve by alice" in page(client, carol, item)  # admins see everything


def test_the_appeals_api_hides_it_from_reviewers_until_the_item_is_decided_again(api, alice, bob, carol, ingest, appealed):
    item, appeal = appealed

    def original(user):
        resp = api(user).get(f"/api/v1/appeals/{appeal.pk}/")
        assert resp.status_code == 200
        [listed] = [a for a in api(user).get("/api/v1/appeals/").json() if a["id"] == appeal.pk]
        assert listed["original_verdict"] == resp.json()["original_verdict"]
        return resp.json()["original_verdict"]

    assert original(bob) == {"id": appeal.original_verdict_id, "verdict": None, "reason": None, "hidden": True}
    for user in (alice, carol, ingest):  # its author, an admin, the client system that filed the appeal
        assert original(user)["verdict"] == "approve" and original(user)["hidden"] is False
    services.verdict_submit(item=item, reviewer=bob, verdict="overturn", reason="known_benign")
    assert original(bob) == {
        "id": appeal.original_verdict_id,
        "verdict": "approve",
        "reason": "suspicious_pattern",
        "hidden": False,
    }
