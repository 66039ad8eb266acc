"""POST/GET /api/v1/events/: all-or-nothing batches, duplicates, errors naming row and field."""

import pytest

from reviews.models import Event, Label, ReviewItem
from tests.conftest import NSL_LIVE, nsl_events
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db


def vpn_source(client_user):
    source = SourceFactory(name="vpn")
    source.api_clients.add(client_user)
    return source


def ev(i, **over):
    row = {
        "external_id": f"x{i}",
        "entity": "u1",
        "occurred_at": "2026-11-30T10:00:00Z",
        "attributes": {"bytes": i, "proto": "tcp", "admin": False, "note": "n"},
    }
    row.update(over)
    return row


def test_batch_is_accepted_stored_and_enqueued_after_commit(api, ingest, django_capture_on_commit_callbacks, monkeypatch):
    source = vpn_source(ingest)
    sent = []
    monkeypatch.setattr("reviews.tasks.score_events.delay", lambda ids: sent.append(ids))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        resp = api(ingest).post("/api/v1/events/", {"source": "vpn", "events": [ev(1), ev(2), ev(3)]}, format="json")
        assert sent == []  # nothing is enqueued before the transaction commits
    assert resp.status_code == 202, resp.content
    body = resp.json()
    assert body["accepted"] == 3 and body["duplicates"] == 0
    assert [e["status"] for e in body["events"]] == ["received"] * 3
    for cb in callbacks:
        cb()
    stored = set(Event.objects.filter(source=source).values_list("id", flat=True))
    assert sorted(sent[0]) == sorted(stored) and len(stored) == 3


def test_single_event_with_source_key(api, ingest):
    vpn_source(ingest)
    resp = api(ingest).post("/api/v1/events/", {"source": "vpn", **ev(7)}, format="json")
    assert resp.status_code == 202
    assert resp.json()["events"][0]["external_id"] == "x7"
    assert Event.objects.filter(external_id="x7").exists()


def test_bad_batch_is_refused_whole_listing_each_row(api, ingest):
    vpn_source(ingest)
    rows = [
        ev(0),
        ev(1, occurred_at="yesterday"),
        ev(2),
        ev(3, attributes={"bytes": "many", "proto": "tcp", "admin": False, "note": ""}),
    ]
    resp = api(ingest).post("/api/v1/events/", {"source": "vpn", "events": rows}, format="json")
    assert resp.status_code == 400
    errors = resp.json()["errors"]
    assert {(e["index"], e["field"]) for e in errors} == {(1, "occurred_at"), (3, "attributes.bytes")}
    assert all(e["message"] for e in errors)
    assert Event.objects.count() == 0


def test_same_batch_twice_reports_duplicates_and_stores_nothing_new(api, ingest):
    vpn_source(ingest)
    rows = [ev(i) for i in range(5)]
    first = api(ingest).post("/api/v1/events/", {"source": "vpn", "events": rows}, format="json").json()
    second = api(ingest).post("/api/v1/events/", {"source": "vpn", "events": rows + [ev(9)]}, format="json").json()
    assert first["accepted"] == 5
    assert second["accepted"] == 1 and second["duplicates"] == 5
    assert [e["id"] for e in second["events"][:5]] == [e["id"] for e in first["events"]]
    assert Event.objects.count() == 6


@pytest.mark.parametrize(
    "body, field",
    [
        ({"events": [ev(1)]}, "source"),
        ({"source": "nope", "events": [ev(1)]}, "source"),
        ({"source": "vpn", "events": []}, "events"),
        ({"source": "vpn", "events": "x"}, "events"),
        ({"source": "vpn", "events": [ev(1)], "extra": 1}, "extra"),
        ({"source": "vpn", "events": [5]}, "event"),
    ],
)
def test_malformed_bodies_get_400_naming_the_field(api, ingest, body, field):
    vpn_source(ingest)
    resp = api(ingest).post("/api/v1/events/", body, format="json")
    assert resp.status_code == 400
    assert field in {e["field"] for e in resp.json()["errors"]}
    assert Event.objects.count() == 0


def test_oversized_batch_is_refused(api, ingest, settings):
    settings.SECAI_MAX_BATCH = 3
    vpn_source(ingest)
    resp = api(ingest).post("/api/v1/events/", {"source": "vpn", "events": [ev(i) for i in range(4)]}, format="json")
    assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == "events"


@pytest.mark.parametrize(
    "raw", [b"{not json", b'{"source": "vpn", "events": [{"external_id": NaN}]}', b"[1,2", b'"just a string"']
)
def test_invalid_json_is_a_400_with_the_error_shape(api, ingest, raw):
    vpn_source(ingest)
    resp = api(ingest).post("/api/v1/events/", raw, content_type="application/json")
    assert resp.status_code == 400
    assert resp.json()["errors"][0]["message"]


def test_who_may_submit_and_read(api, alice, carol, mallory, ingest):
    vpn_source(ingest)
    body = {"source": "vpn", "events": [ev(1)]}
    assert api(None).post("/api/v1/events/", body, format="json").status_code == 401
    assert api(mallory).post("/api/v1/events/", body, format="json").status_code == 403
    assert api(alice).post("/api/v1/events/", body, format="json").status_code == 403  # reviewers do not submit
    assert api(carol).post("/api/v1/events/", body, format="json").status_code == 202
    assert api(mallory).get("/api/v1/events/").status_code == 403
    assert api(alice).get("/api/v1/events/").status_code == 200
    assert Event.objects.count() == 1


def test_real_rows_are_scored_queued_and_readable(api, ingest, trained_source, django_capture_on_commit_callbacks):
    trained_source.api_clients.add(ingest)
    rows = [r for r, _ in nsl_events(NSL_LIVE, 200, prefix="live")]
    with django_capture_on_commit_callbacks(execute=True):  # eager Celery in unit tests
        resp = api(ingest).post("/api/v1/events/", {"source": "nsl-kdd", "events": rows}, format="json")
    assert resp.status_code == 202 and resp.json()["accepted"] == 200
    live = Event.objects.filter(external_id__startswith="live-")
    assert not live.filter(status="received").exists()
    policy = trained_source.policy
    flagged = live.filter(score__gte=policy.review_threshold)
    assert flagged.count() > 0 and live.exclude(score__gte=policy.review_threshold).count() > 0
    assert ReviewItem.objects.filter(event__in=flagged).count() == flagged.count()
    one = flagged.first()
    detail = api(ingest).get(f"/api/v1/events/{one.id}/").json()
    assert detail["status"] == "queued" and detail["model_version"] == 1
    assert detail["proposed_action"] == policy.action_for(detail["score"])
    assert detail["review"] == {"id": one.review_item.id, "state": "open", "verdict": None}
    assert detail["explanation"] and {"attribute", "contribution"} <= set(detail["explanation"][0])
    listing = api(ingest).get("/api/v1/events/", {"source": "nsl-kdd", "status": "queued", "page_size": 10}).json()
    assert len(listing["results"]) == 10 and listing["next"]
    assert not Label.objects.filter(event__in=live).exists()  # no label until a human decides


def test_api_clients_are_scoped_to_their_sources(api, ingest, db):
    from django.contrib.auth.models import Group, User

    vpn_source(ingest)
    SourceFactory(name="payments")
    other = User.objects.create_user("other-client")
    other.groups.add(Group.objects.get(name="api_clients"))
    refused = api(ingest).post("/api/v1/events/", {"source": "payments", "events": [ev(1)]}, format="json")
    assert refused.status_code == 400 and "may submit to" in refused.json()["errors"][0]["message"]
    assert api(ingest).post("/api/v1/events/", {"source": "vpn", "events": [ev(2)]}, format="json").status_code == 202
    assert api(other).post("/api/v1/events/", {"source": "vpn", "events": [ev(3)]}, format="json").status_code == 400
    assert [e["external_id"] for e in api(ingest).get("/api/v1/events/").json()["results"]] == ["x2"]
    assert api(other).get("/api/v1/events/").json()["results"] == []
    assert Event.objects.count() == 1


def test_events_below_the_review_threshold_propose_allow_even_as_audit_samples(
    api, ingest, trained_source, django_capture_on_commit_callbacks
):
    trained_source.api_clients.add(ingest)
    policy = trained_source.policy
    # A policy stored before action thresholds had to be at or above the review threshold.
    type(policy).objects.filter(pk=policy.pk).update(
        review_threshold=0.9,
        thresholds=[{"action": "step_up", "min_score": 0.5}, {"action": "deny", "min_score": 0.8}],
        audit_sample_rate=1.0,
    )
    policy.refresh_from_db()
    rows = [r for r, _ in nsl_events(NSL_LIVE, 200, prefix="low")]
    with django_capture_on_commit_callbacks(execute=True):
        assert api(ingest).post("/api/v1/events/", {"source": "nsl-kdd", "events": rows}, format="json").status_code == 202
    low = Event.objects.filter(external_id__startswith="low-", score__lt=0.9)
    assert low.filter(score__gte=0.5).exists()  # scores an action threshold reaches, below review
    assert set(low.values_list("proposed_action", flat=True)) == {"allow"}
    samples = ReviewItem.objects.filter(event__in=low)
    assert samples.exists() and set(samples.values_list("kind", "proposed_action")) == {("audit_sample", "allow")}
    assert policy.action_for(0.85) == "allow" and policy.action_for(0.95) == "deny"
    assert policy.actions_for([0.6, 0.85, 0.9, 0.95]) == ["allow", "allow", "deny", "deny"]
