"""Models API and retraining endpoint, per role."""

import pytest

from models_registry.models import ModelVersion

pytestmark = pytest.mark.django_db


def test_admin_starts_retraining_and_gets_202(api, carol, trained_source, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        resp = api(carol).post("/api/v1/sources/nsl-kdd/retrain/")
    assert resp.status_code == 202, resp.content
    assert resp.json()["version"] == 2 and resp.json()["status"] == "training"
    v2 = ModelVersion.objects.get(source=trained_source, version=2)
    assert v2.status in ("champion", "rejected") and v2.validation_report["decision"] in ("promote", "reject")


def test_second_retrain_while_one_runs_is_409(api, carol, trained_source):
    assert api(carol).post("/api/v1/sources/nsl-kdd/retrain/").status_code == 202  # not run: no commit in this test
    resp = api(carol).post("/api/v1/sources/nsl-kdd/retrain/")
    assert resp.status_code == 409 and "already in progress" in resp.json()["errors"][0]["message"]


@pytest.mark.parametrize("persona", ["alice", "mallory", "ingest"])
def test_non_admins_cannot_retrain_promote_or_change_policy(api, request, persona, trained_source):
    user = request.getfixturevalue(persona)
    model = ModelVersion.objects.get(source=trained_source)
    assert api(user).post("/api/v1/sources/nsl-kdd/retrain/").status_code == 403
    assert api(user).post(f"/api/v1/models/{model.pk}/rollback/", {"reason": "x"}, format="json").status_code == 403
    assert api(user).patch("/api/v1/sources/nsl-kdd/policy/", {"review_threshold": 0.1}, format="json").status_code == 403
    assert api(user).post("/api/v1/sources/", {"name": "x", "schema": {"a": "numeric"}}, format="json").status_code == 403
    trained_source.policy.refresh_from_db()
    assert trained_source.policy.review_threshold == 0.5
    assert ModelVersion.objects.filter(source=trained_source).count() == 1


def test_admin_edits_policy_and_it_is_audited(api, carol, trained_source):
    body = {
        "review_threshold": 0.3,
        "thresholds": [{"action": "deny", "min_score": 0.9}, {"action": "step_up", "min_score": 0.3}],
    }
    resp = api(carol).patch("/api/v1/sources/nsl-kdd/policy/", body, format="json")
    assert resp.status_code == 200, resp.content
    assert resp.json()["thresholds"] == [{"action": "step_up", "min_score": 0.3}, {"action": "deny", "min_score": 0.9}]
    trained_source.policy.refresh_from_db()
    assert trained_source.policy.action_for(0.95) == "deny" and trained_source.policy.action_for(0.5) == "step_up"
    bad = api(carol).patch(
        "/api/v1/sources/nsl-kdd/policy/",
        {"thresholds": [{"action": "deny", "min_score": 0.2}, {"action": "step_up", "min_score": 0.6}]},
        format="json",
    )
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "thresholds"
    from reviews.models import AuditEntry

    entry = AuditEntry.objects.get(verb="policy.update")
    assert entry.before["review_threshold"] == 0.5 and entry.after["review_threshold"] == 0.3


def test_admin_creates_a_source(api, carol, alice):
    resp = api(carol).post(
        "/api/v1/sources/",
        {"name": "vpn-logins", "schema": {"country": "categorical", "failures": "numeric"}, "reviewers": ["alice"]},
        format="json",
    )
    assert resp.status_code == 201, resp.content
    assert api(alice).get("/api/v1/sources/").json()[0]["name"] == "vpn-logins"
    bad = api(carol).post("/api/v1/sources/", {"name": "y", "schema": {"a": "colour"}}, format="json")
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"].startswith("schema")


def test_models_listing_for_reviewers(api, alice, mallory, trained_source):
    data = api(alice).get("/api/v1/models/", {"source": "nsl-kdd"}).json()
    assert [(m["version"], m["status"]) for m in data] == [(1, "champion")]
    assert api(mallory).get("/api/v1/models/").status_code == 403


def test_schema_and_health_endpoints(client):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert "/api/v1/events/" in schema.json()["paths"]
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}
