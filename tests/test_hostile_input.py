"""Hostile and malformed input found by trying to break the API: always a 4xx in the JSON error
shape, never a 500, and nothing stored."""

import json

import pytest
from django.urls import reverse

from reviews.models import AuditEntry, Event, Source
from tests.conftest import PASSWORD
from tests.factories import ReviewItemFactory, SourceFactory

pytestmark = pytest.mark.django_db

GOOD = {
    "external_id": "a",
    "entity": "u",
    "occurred_at": "2026-11-30T10:00:00Z",
    "attributes": {"bytes": 1, "proto": "tcp", "admin": False, "note": ""},
}


@pytest.fixture
def vpn(ingest):
    source = SourceFactory(name="vpn")
    source.api_clients.add(ingest)
    return source


def post_raw(client, path, raw: str):
    return client.post(
        path, raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw, content_type="application/json"
    )


@pytest.mark.parametrize(
    "raw",
    [
        '{"source": "vpn", "events": [{"external_id": "a", "entity": "u", "occurred_at": "2026-11-30T10:00:00Z", "attributes": {"\\ud800": 1}}]}',
        '{"source": "\\ud800", "events": []}',
        '{"source": "vpn", "\\ud800": 1}',
        '{"source": "vpn", "events": [{"external_id": "a\\udfff", "entity": "u", "occurred_at": "2026-11-30T10:00:00Z", "attributes": {}}]}',
        "[" * 100000,
        '{"source": "vpn", "events": [{"attributes": ' + "[" * 5000 + "]" * 5000 + "}]}",
    ],
)
def test_bad_unicode_and_deep_nesting_are_400s(api, ingest, vpn, raw):
    resp = post_raw(api(ingest), "/api/v1/events/", raw)
    assert resp.status_code == 400, resp.content[:200]
    assert resp.json()["errors"][0]["message"]
    assert Event.objects.count() == 0


def test_surrogate_in_a_source_schema_is_refused_and_nothing_stored(api, carol):
    resp = post_raw(api(carol), "/api/v1/sources/", '{"name": "t6", "schema": {"\\ud800": "numeric"}}')
    assert resp.status_code == 400 and "lone surrogate" in resp.json()["errors"][0]["message"]
    assert not Source.objects.filter(name="t6").exists()
    assert api(carol).get("/api/v1/sources/").status_code == 200


def test_surrogate_in_a_decision_or_policy_is_a_400(api, alice, carol):
    item = ReviewItemFactory()
    assert (
        post_raw(api(alice), f"/api/v1/review-items/{item.pk}/decision/", '{"verdict": "\\ud800", "reason": "other"}').status_code
        == 400
    )
    resp = api(carol).generic(
        "PATCH",
        f"/api/v1/sources/{item.source.name}/policy/",
        b'{"thresholds": [{"action": "\\ud800", "min_score": 0.5}]}',
        content_type="application/json",
    )
    assert resp.status_code == 400


def test_non_numeric_ids_and_unknown_api_paths_are_json_404s(api, alice):
    assert (
        api(alice)
        .post("/api/v1/review-items/abc/decision/", {"verdict": "approve", "reason": "other"}, format="json")
        .status_code
        == 404
    )
    resp = api(alice).get("/api/v1/no-such-thing/")
    assert resp.status_code == 404 and resp.json() == {"errors": [{"field": "non_field_errors", "message": "not found"}]}


def test_body_over_the_limit_is_a_json_413(api, ingest, vpn, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps({"source": "vpn", "events": [dict(GOOD, external_id=f"e{i}") for i in range(200)]})
    resp = api(ingest).post("/api/v1/events/", body, content_type="application/json")
    assert resp.status_code == 413 and resp.json()["errors"][0]["message"] == "request body too large"
    assert Event.objects.count() == 0


def test_an_event_in_a_batch_may_not_name_another_source(api, ingest, vpn):
    resp = api(ingest).post("/api/v1/events/", {"source": "vpn", "events": [dict(GOOD, source="payments")]}, format="json")
    assert resp.status_code == 400 and resp.json()["errors"] == [
        {"index": 0, "field": "source", "message": "is not a known event field"}
    ]


def test_repeated_ids_are_reported_even_on_invalid_rows(api, ingest, vpn):
    rows = [dict(GOOD, occurred_at="yesterday"), dict(GOOD, attributes={})]
    errors = api(ingest).post("/api/v1/events/", {"source": "vpn", "events": rows}, format="json").json()["errors"]
    assert {"index": 1, "field": "external_id", "message": "repeats the external_id of row 0"} in errors


def test_times_before_1970_utc_are_refused_whatever_the_offset(api, ingest, vpn):
    resp = api(ingest).post(
        "/api/v1/events/", {"source": "vpn", **dict(GOOD, occurred_at="1970-01-01T00:00:00+01:00")}, format="json"
    )
    assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == "occurred_at"


def test_unknown_filter_values_are_400s(api, alice):
    assert api(alice).get("/api/v1/events/?status=bogus").status_code == 400
    assert api(alice).get("/api/v1/review-items/?state=bogus").status_code == 400


def test_policy_needs_an_action_threshold_and_known_fields(api, carol):
    source = SourceFactory(name="vpn2")
    url = "/api/v1/sources/vpn2/policy/"
    assert api(carol).patch(url, {"thresholds": []}, format="json").status_code == 400
    assert api(carol).patch(url, {"review_threshold": 1.5}, format="json").status_code == 400
    unknown = api(carol).patch(url, {"source": "other"}, format="json")
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["field"] == "source"
    assert api(carol).patch(url, {"review_threshold": 0.5}, format="json").status_code == 200  # no change: no audit entry
    assert not AuditEntry.objects.filter(verb="policy.update").exists()
    source.policy.refresh_from_db()
    assert source.policy.review_threshold == 0.5 and source.policy.thresholds


@pytest.mark.parametrize(
    "path", ["/?entity=%00", "/?source=%00", "/?q=%00", "/actions/lists/?source=%00", "/actions/deliveries/?source=%00"]
)
def test_a_nul_character_in_a_console_query_string_is_a_400(client, carol, path):
    client.login(username="carol", password=PASSWORD)
    resp = client.get(path)
    assert resp.status_code == 400 and resp["Content-Type"].startswith("text/plain")


def test_a_nul_character_in_an_api_query_string_is_a_400_naming_the_parameter(api, carol):
    resp = api(carol).get("/api/v1/events/?status=open&entity=a%00b")
    assert resp.status_code == 400
    assert resp.json() == {"errors": [{"field": "entity", "message": "must not contain NUL characters"}]}


def test_api_clients_see_only_their_sources(api, ingest, vpn):
    SourceFactory(name="payments")
    assert [s["name"] for s in api(ingest).get("/api/v1/sources/").json()] == ["vpn"]
    assert api(ingest).get("/api/v1/sources/payments/").status_code == 404


def test_bulk_back_link_stays_on_this_site(client, alice):
    item = ReviewItemFactory()
    client.login(username="alice", password=PASSWORD)
    resp = client.post(
        reverse("reviews:bulk"),
        {
            "confirm": "yes",
            "ids": [item.pk],
            "verdict": "overturn",
            "reason": "known_benign",
            "back": "https://example.invalid/phish",
        },
    )
    assert resp.status_code == 302 and resp["Location"] == reverse("reviews:queue")
    page = client.post(reverse("reviews:bulk"), {"verdict": "overturn", "back": "javascript:alert(1)"})
    assert "javascript:" not in page.content.decode()
