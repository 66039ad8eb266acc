"""The actions API and console pages: who may do what, secrets never shown back, bad input refused
with the API's error shape, and every change audited."""

import pytest

from actions import services
from actions.models import ActionType, Delivery, Executor, ListEntry
from reviews import services as review_services
from reviews.models import AuditEntry
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

SECRET = "very-secret-value-0123456789"


def test_executor_secret_is_write_only(api, carol):
    resp = api(carol).post(
        "/api/v1/executors/",
        {"name": "fw", "url": "https://fw.example/block", "reversal_url": "https://fw.example/unblock", "secret": SECRET},
        format="json",
    )
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert "secret" not in body and body["secret_hint"] == "…6789" and SECRET not in resp.content.decode()
    listed = api(carol).get("/api/v1/executors/")
    assert SECRET not in listed.content.decode()
    ex = Executor.objects.get(name="fw")
    assert ex.secret == SECRET
    # a change without a secret keeps it
    assert api(carol).patch(f"/api/v1/executors/{ex.pk}/", {"max_attempts": 4}, format="json").status_code == 200
    ex.refresh_from_db()
    assert ex.secret == SECRET and ex.max_attempts == 4
    audit = AuditEntry.objects.filter(verb="executor.save")
    assert audit.count() == 2 and all(SECRET not in str(a.after) for a in audit)


@pytest.mark.parametrize(
    "url",
    ["ftp://fw.example/x", "file:///etc/passwd", "https://user:pw@fw.example/x", "gopher://x", "javascript:alert(1)"],
)
def test_executor_urls_must_be_http(api, carol, url):
    resp = api(carol).post("/api/v1/executors/", {"name": "fw", "url": url, "secret": SECRET}, format="json")
    assert resp.status_code == 400 and set(resp.json()) == {"errors"}
    assert not Executor.objects.exists()


def test_a_short_secret_is_refused(api, carol):
    resp = api(carol).post("/api/v1/executors/", {"name": "fw", "url": "https://fw.example/", "secret": "short"}, format="json")
    assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == "secret"


def test_admin_switches_mode_over_the_api_and_it_is_audited(api, carol, source):
    deny = ActionType.objects.get(source=source, name="deny")
    resp = api(carol).patch(f"/api/v1/action-types/{deny.pk}/", {"mode": "shadow"}, format="json")
    assert resp.status_code == 200 and resp.json()["mode"] == "shadow"
    assert AuditEntry.objects.get(verb="action_type.mode").after == {"mode": "shadow"}
    bad = api(carol).patch(f"/api/v1/action-types/{deny.pk}/", {"mode": "yolo"}, format="json")
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "mode"


def test_admin_adds_an_action_and_uses_it_in_the_policy(api, carol, source):
    resp = api(carol).post(
        "/api/v1/action-types/",
        {"source": source.name, "name": "quarantine", "label": "quarantine the device", "severity": 5},
        format="json",
    )
    assert resp.status_code == 201, resp.content
    dup = api(carol).post(
        "/api/v1/action-types/", {"source": source.name, "name": "quarantine", "label": "x", "severity": 6}, format="json"
    )
    assert dup.status_code == 400
    policy = api(carol).patch(
        f"/api/v1/sources/{source.name}/policy/",
        {"thresholds": [{"action": "step_up", "min_score": 0.5}, {"action": "quarantine", "min_score": 0.9}]},
        format="json",
    )
    assert policy.status_code == 200, policy.content
    unknown = api(carol).patch(
        f"/api/v1/sources/{source.name}/policy/", {"thresholds": [{"action": "nuke", "min_score": 0.9}]}, format="json"
    )
    assert unknown.status_code == 400 and "unknown actions" in unknown.json()["errors"][0]["message"]
    source.policy.refresh_from_db()
    assert source.policy.action_for(0.95) == "quarantine"


def test_list_entries_over_the_api(api, carol, alice, source):
    resp = api(carol).post(
        "/api/v1/list-entries/",
        {
            "source": source.name,
            "kind": "allow",
            "entity": "scanner-1",
            "reason": "weekly scan",
            "expires_at": "2099-01-01T00:00:00Z",
        },
        format="json",
    )
    assert resp.status_code == 201, resp.content
    entry_id = resp.json()["id"]
    assert [e["entity"] for e in api(alice).get(f"/api/v1/list-entries/?source={source.name}").json()["results"]] == ["scanner-1"]
    assert api(alice).delete(f"/api/v1/list-entries/{entry_id}/").status_code == 403
    assert api(carol).delete(f"/api/v1/list-entries/{entry_id}/").status_code == 204
    assert api(carol).delete(f"/api/v1/list-entries/{entry_id}/").status_code == 409
    assert ListEntry.objects.get().removed_by == "carol"
    assert not api(alice).get("/api/v1/list-entries/").json()["results"]
    assert len(api(alice).get("/api/v1/list-entries/?include_inactive=true").json()["results"]) == 1
    past = api(carol).post(
        "/api/v1/list-entries/",
        {"source": source.name, "kind": "block", "entity": "x", "expires_at": "2001-01-01T00:00:00Z"},
        format="json",
    )
    assert past.status_code == 400 and past.json()["errors"][0]["field"] == "expires_at"


def test_decision_api_can_allowlist_on_overturn(api, alice, make_item):
    item = make_item(entity="printer-9")
    resp = api(alice).post(
        f"/api/v1/review-items/{item.pk}/decision/",
        {"verdict": "overturn", "reason": "known_benign", "allowlist_entity": True},
        format="json",
    )
    assert resp.status_code == 200
    assert ListEntry.objects.get(kind="allow").entity == "printer-9"
    detail = api(alice).get(f"/api/v1/review-items/{item.pk}/").json()
    assert detail["mode"] == "propose" and detail["execution"] is None and detail["appeal"] is None


def test_item_api_shows_execution_state(api, alice, deny, make_item):
    item = make_item()
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    detail = api(alice).get(f"/api/v1/review-items/{item.pk}/").json()
    assert detail["execution"]["execute"]["state"] == "pending" and detail["execution"]["execute"]["action"] == "deny"


def test_delivery_log_page_shows_failed_delivery_with_retry(client, carol, deny, make_item, alice):
    item = make_item()
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    Delivery.objects.update(state="failed", attempts=3, last_error="<script>alert(1)</script>")
    client.login(username="carol", password=PASSWORD)
    page = client.get("/actions/deliveries/?state=failed").content.decode()
    assert "Retry" in page and "&lt;script&gt;alert(1)" in page and "<script>alert(1)" not in page
    resp = client.post(f"/actions/deliveries/{Delivery.objects.get().pk}/retry/")
    assert resp.status_code == 302 and Delivery.objects.get().state in ("pending", "delivered", "sending")


def test_executor_page_never_shows_the_secret(client, carol, webhook):
    client.login(username="carol", password=PASSWORD)
    for path in ("/actions/executors/", f"/actions/executors/{webhook.pk}/"):
        page = client.get(path).content.decode()
        assert webhook.secret not in page and webhook.secret_hint in page


def test_console_mode_switch_form(client, carol, source):
    deny = ActionType.objects.get(source=source, name="deny")
    client.login(username="carol", password=PASSWORD)
    resp = client.post(
        f"/actions/types/{deny.pk}/",
        {"name": "deny", "label": "deny access", "severity": 2, "mode": "act_then_review", "deadline_fallback": "wait"},
    )
    assert resp.status_code == 302
    deny.refresh_from_db()
    assert deny.mode == "act_then_review"
    assert AuditEntry.objects.filter(verb="action_type.mode", actor_label="carol").exists()


def test_reviewer_sees_lists_but_cannot_change_them(client, alice, source):
    client.login(username="alice", password=PASSWORD)
    assert client.get("/actions/lists/").status_code == 200
    assert client.post("/actions/lists/", {"source": source.name, "kind": "allow", "entity": "x"}).status_code == 403
    assert not ListEntry.objects.exists()


def test_openapi_schema_documents_the_actions_api(client):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path in (
        "/api/v1/appeals/",
        "/api/v1/appeals/{id}/",
        "/api/v1/executors/",
        "/api/v1/action-types/",
        "/api/v1/subscriptions/",
        "/api/v1/deliveries/",
        "/api/v1/deliveries/{id}/retry/",
        "/api/v1/list-entries/",
        "/api/v1/list-entries/{id}/",
    ):
        assert path in schema["paths"], path
    executor = schema["components"]["schemas"]["Executor"]["properties"]
    assert executor["secret"]["writeOnly"] is True and executor["secret_hint"]["readOnly"] is True
    decision = schema["components"]["schemas"]["DecisionIn"]["properties"]
    assert "allowlist_entity" in decision


def test_hostile_entities_and_statements_render_as_text(client, carol, alice, deny, make_item, source):
    from actions import services

    script = "<script>window.__xss=1</script>"
    item = make_item(entity=script)
    review_services.verdict_submit(item=item, reviewer=alice, verdict="approve", reason="confirmed_attack")
    services.list_entry_add(source=source, kind="block", entity=script, actor=carol, reason=script)
    services.appeal_file(
        source=source, external_id=script, event_external_id=item.event.external_id, statement=script, actor=None
    )
    client.login(username="carol", password=PASSWORD)
    for path in ("/actions/lists/", f"/items/{item.pk}/", "/actions/deliveries/", "/"):
        page = client.get(path).content.decode()
        assert script not in page and "&lt;script&gt;window.__xss=1&lt;/script&gt;" in page, path


@pytest.mark.parametrize(
    "path,body",
    [
        ("/api/v1/executors/", ["not", "an", "object"]),
        ("/api/v1/executors/", {"name": "x" * 300, "url": "https://a.example/", "secret": SECRET}),
        ("/api/v1/executors/", {"name": "ok", "kind": "carrier-pigeon"}),
        ("/api/v1/executors/", {"name": "ok", "url": "https://a.example/", "secret": SECRET, "max_attempts": 0}),
        ("/api/v1/action-types/", {"source": "nope", "name": "x", "label": "x", "severity": 1}),
        ("/api/v1/action-types/", {"source": "idp", "name": "bad name!", "label": "x", "severity": 1}),
        ("/api/v1/action-types/", {"source": "idp", "name": "x", "label": "x", "severity": 1000}),
        ("/api/v1/action-types/", {"source": "idp", "name": "x", "label": "x", "severity": 1, "executor": "ghost"}),
        ("/api/v1/action-types/", {"source": "idp", "name": "x", "label": "x", "severity": 1, "deadline_minutes": 0}),
        ("/api/v1/subscriptions/", {"name": "s", "url": "https://a.example/", "secret": SECRET, "topics": ["everything"]}),
        ("/api/v1/subscriptions/", {"name": "s", "url": "https://a.example/", "secret": SECRET, "topics": []}),
        ("/api/v1/list-entries/", {"source": "idp", "kind": "allow", "entity": "a\x00b"}),
        ("/api/v1/list-entries/", {"source": "idp", "kind": "maybe", "entity": "a"}),
        ("/api/v1/list-entries/", {"source": "idp", "kind": "block", "entity": "a", "action": "allow"}),
        ("/api/v1/list-entries/", {"source": "idp", "kind": "allow", "entity": "a", "action": "deny"}),
        ("/api/v1/appeals/", {"source": "idp", "event": "e", "appeal_id": "a", "statement": "\x00"}),
        ("/api/v1/appeals/", "just a string"),
    ],
)
def test_bad_input_is_a_4xx_with_the_error_shape(api, carol, source, path, body):
    resp = api(carol).post(path, body, format="json")
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.content[:300])
    assert set(resp.json()) == {"errors"} and resp.json()["errors"]
    assert not Executor.objects.exists() and not ListEntry.objects.exists()
    assert ActionType.objects.filter(source=source).count() == 4


def test_action_names_do_not_change(api, carol, source):
    deny = ActionType.objects.get(source=source, name="deny")
    resp = api(carol).patch(f"/api/v1/action-types/{deny.pk}/", {"name": "refuse"}, format="json")
    assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == "name"


def test_pages_show_an_admin_defined_action_by_its_label(client, source, carol, make_item):
    services.action_type_save(actor=carol, source=source, name="quarantine", label="Quarantine <host>", severity=4)
    item = make_item(action="quarantine")
    client.force_login(carol)
    for url in ("/", f"/items/{item.pk}/"):
        page = client.get(url, {"state": "all"} if url == "/" else {}).content.decode()
        assert "Quarantine &lt;host&gt;" in page and "Quarantine <host>" not in page, url


def test_policy_page_says_which_actions_run_before_review(client, source, carol, deny):
    client.force_login(carol)
    page = client.get(f"/sources/{source.name}/policy/").content.decode()
    assert "No action runs before a reviewer approves it." in page
    services.action_type_save(actor=carol, action_type=deny, mode="act_then_review")
    page = client.get(f"/sources/{source.name}/policy/").content.decode()
    assert "No action runs before a reviewer approves it." not in page
    assert "Executed at once, before review" in page and deny.label in page


def test_allowlist_checkbox_names_the_entity_and_expiry_and_the_audit_records_both(client, alice, deny, make_item, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.SECAI_ALLOWLIST_DAYS = 30
    item = make_item(entity="vpn-gw-7")
    review_services.review_item_claim(item=item, reviewer=alice)
    client.login(username="alice", password=PASSWORD)
    page = client.get(f"/items/{item.pk}/").content.decode()
    until = (timezone.now() + timedelta(days=30)).strftime("%Y-%m-%d")
    label = page[page.index('id="id_allowlist_entity"') :][:400]
    assert "vpn-gw-7" in label and "for 30 days" in label and until in label and "none of its events" in label
    resp = client.post(
        f"/items/{item.pk}/decide/", {"verdict": "overturn", "reason": "known_benign", "allowlist_entity": "on"}, follow=True
    )
    assert "on the allow list of" in resp.content.decode() and "for 30 days" in resp.content.decode()
    entry = ListEntry.objects.get(entity="vpn-gw-7", kind="allow")
    audit = AuditEntry.objects.get(verb="list.allow.add", object_id=str(entry.pk))
    assert audit.actor_label == "alice" and audit.after["entity"] == "vpn-gw-7"
    assert audit.after["expires_at"].startswith(until) and f"overturned item {item.pk}" in audit.after["reason"]


def test_an_entity_cannot_be_on_both_lists_of_a_source(api, carol, source, deny):
    from datetime import timedelta

    from django.utils import timezone

    allow = api(carol).post(
        "/api/v1/list-entries/", {"source": source.name, "kind": "allow", "entity": "10.0.0.7"}, format="json"
    )
    assert allow.status_code == 201 and allow.json()["updated"] is False
    block = api(carol).post(
        "/api/v1/list-entries/", {"source": source.name, "kind": "block", "entity": "10.0.0.7"}, format="json"
    )
    assert block.status_code == 400
    (error,) = block.json()["errors"]
    assert (
        error["field"] == "kind" and f"already on the allow list of {source.name} (entry {allow.json()['id']}" in error["message"]
    )
    assert list(ListEntry.objects.values_list("kind", flat=True)) == ["allow"]
    # Once the allow entry has expired, the block entry is accepted.
    ListEntry.objects.filter(pk=allow.json()["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    again = api(carol).post(
        "/api/v1/list-entries/", {"source": source.name, "kind": "block", "entity": "10.0.0.7"}, format="json"
    )
    assert again.status_code == 201, again.content


def test_posting_a_listed_entity_again_updates_its_entry_with_200_and_audits_it(api, carol, source):
    first = api(carol).post(
        "/api/v1/list-entries/",
        {"source": source.name, "kind": "allow", "entity": "scanner-1", "reason": "weekly scan"},
        format="json",
    )
    assert first.status_code == 201
    second = api(carol).post(
        "/api/v1/list-entries/",
        {
            "source": source.name,
            "kind": "allow",
            "entity": "scanner-1",
            "reason": "daily scan",
            "expires_at": "2099-01-01T00:00:00Z",
        },
        format="json",
    )
    assert second.status_code == 200 and second.json()["updated"] is True and second.json()["id"] == first.json()["id"]
    assert ListEntry.objects.get().reason == "daily scan"
    audit = AuditEntry.objects.get(verb="list.allow.update")
    assert audit.before["reason"] == "weekly scan" and audit.before["expires_at"] is None
    assert audit.after["reason"] == "daily scan" and audit.after["expires_at"].startswith("2099-01-01")
    assert AuditEntry.objects.filter(verb="list.allow.add").count() == 1


def test_console_list_form_refuses_the_other_list_and_says_when_it_updated(client, carol, source):
    client.login(username="carol", password=PASSWORD)
    form = {"source": source.name, "kind": "allow", "entity": "vpn-gw-7", "reason": "known gateway"}
    assert client.post("/actions/lists/", form).status_code == 302
    again = client.post("/actions/lists/", {**form, "reason": "still known"}, follow=True).content.decode()
    assert "was already on the allow list" in again and "its entry is updated" in again
    refused = client.post("/actions/lists/", {**form, "kind": "block"})
    assert refused.status_code == 200
    page = refused.content.decode()
    entry = ListEntry.objects.get()
    assert f"vpn-gw-7 is already on the allow list of {source.name} (entry {entry.pk}" in page
    assert ListEntry.objects.count() == 1


def test_overturn_cannot_allowlist_a_blocklisted_entity(deny, make_item, alice, carol, source):
    from actions import services

    services.list_entry_add(source=source, kind="block", entity="laptop-12", actor=carol)
    item = make_item(entity="laptop-12")
    with pytest.raises(review_services.ServiceError, match="already on the block list") as caught:
        review_services.verdict_submit(
            item=item, reviewer=alice, verdict="overturn", reason="known_benign", allowlist_entity=True
        )
    assert caught.value.field == "allowlist_entity"
    item.refresh_from_db()
    assert item.state != "decided" and not ListEntry.objects.filter(kind="allow").exists()
