"""API for undo, bulk decisions and reason codes; the create_api_token command."""

import pytest
from django.core.management import call_command

from reviews.models import Label, Source, Verdict
from tests.factories import ReviewItemFactory, SourceFactory

pytestmark = pytest.mark.django_db


def test_undo_through_the_api(api, alice, bob):
    item = ReviewItemFactory()
    api(alice).post(
        f"/api/v1/review-items/{item.pk}/decision/", {"verdict": "approve", "reason": "confirmed_attack"}, format="json"
    )
    verdict = Verdict.objects.get()
    assert api(bob).post(f"/api/v1/verdicts/{verdict.pk}/undo/").status_code == 409
    resp = api(alice).post(f"/api/v1/verdicts/{verdict.pk}/undo/")
    assert resp.status_code == 200 and resp.json()["state"] == "claimed" and resp.json()["claimed_by"] == "alice"
    assert not Label.objects.exists()
    assert api(alice).post(f"/api/v1/verdicts/{verdict.pk}/undo/").status_code == 409


def test_bulk_decision_api(api, alice, bob, mallory):
    items = ReviewItemFactory.create_batch(3)
    api(bob).post(f"/api/v1/review-items/{items[0].pk}/claim/")
    body = {"ids": [i.pk for i in items], "verdict": "overturn", "reason": "known_benign"}
    assert api(mallory).post("/api/v1/review-items/bulk-decision/", body, format="json").status_code == 403
    resp = api(alice).post("/api/v1/review-items/bulk-decision/", body, format="json")
    assert resp.status_code == 200
    assert resp.json()["decided"] == 2 and [s["id"] for s in resp.json()["skipped"]] == [items[0].pk]
    bad = api(alice).post("/api/v1/review-items/bulk-decision/", {"ids": [], "verdict": "x", "reason": "y"}, format="json")
    assert bad.status_code == 400 and {"ids", "verdict"} <= {e["field"] for e in bad.json()["errors"]}


def test_bulk_decision_lists_unknown_and_foreign_ids_as_skipped_and_counts_repeats_once(api, alice):
    from reviews.models import AuditEntry
    from reviews.services import BULK_UNKNOWN_ITEM

    items = ReviewItemFactory.create_batch(2)
    foreign = ReviewItemFactory(event__source=SourceFactory(reviewers=[]))  # not one of alice's sources
    ids = [items[0].pk, 99999999, items[0].pk, foreign.pk, items[1].pk, 99999999]
    resp = api(alice).post(
        "/api/v1/review-items/bulk-decision/", {"ids": ids, "verdict": "overturn", "reason": "known_benign"}, format="json"
    )
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["decided"] == 2 and body["first_opinions"] == 0
    # The same message for an id of no item and for one of another source: which it is is not told.
    assert body["skipped"] == [{"id": foreign.pk, "message": BULK_UNKNOWN_ITEM}, {"id": 99999999, "message": BULK_UNKNOWN_ITEM}]
    assert Verdict.objects.filter(item=items[0]).count() == 1 and not Verdict.objects.filter(item=foreign).exists()
    summary = AuditEntry.objects.get(verb="bulk.decide")
    assert summary.after["items"] == [items[0].pk, items[1].pk]
    assert summary.after["skipped"] == [foreign.pk, 99999999]


def test_reason_codes_listed_for_reviewers_only(api, alice, mallory):
    codes = api(alice).get("/api/v1/reason-codes/").json()
    assert {"confirmed_attack", "known_benign"} <= {c["code"] for c in codes}
    assert api(mallory).get("/api/v1/reason-codes/").status_code == 403


def test_reason_must_fit_the_verdict(api, alice):
    item = ReviewItemFactory()
    resp = api(alice).post(
        f"/api/v1/review-items/{item.pk}/decision/", {"verdict": "approve", "reason": "known_benign"}, format="json"
    )
    assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == "reason"


def test_create_api_token_creates_a_scoped_client(capsys):
    SourceFactory(name="vpn")
    call_command("create_api_token", "siem", "--create", "--source", "vpn")
    key = capsys.readouterr().out.strip()
    assert len(key) == 40
    assert list(Source.objects.get(name="vpn").api_clients.values_list("username", flat=True)) == ["siem"]
    call_command("create_api_token", "siem")
    assert capsys.readouterr().out.strip() == key
