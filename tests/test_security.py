"""Credentials only in headers, rate limits per token and on logins, server-owned fields, the
append-only audit trail, and the production settings (check --deploy, no default secrets)."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import caches
from django.db import DatabaseError, connection, transaction
from django.test import Client
from rest_framework.authtoken.models import Token

from reviews.models import AuditEntry, Event, ReviewItem
from secai.http import RedactCredentialsFilter
from tests.conftest import PASSWORD
from tests.factories import ReviewItemFactory, SourceFactory

ROOT = Path(__file__).resolve().parent.parent

GOOD_EVENT = {
    "external_id": "a",
    "entity": "u",
    "occurred_at": "2026-11-30T10:00:00Z",
    "attributes": {"bytes": 1, "proto": "tcp", "admin": False, "note": ""},
}


@pytest.fixture(autouse=True)
def _fresh_shared_cache():
    caches["shared"].clear()
    yield
    caches["shared"].clear()


# ------------------------------------------------------------------ tokens only in headers


@pytest.mark.django_db
@pytest.mark.parametrize("param", ["token", "auth_token", "access_token", "api_key", "key", "Authorization"])
@pytest.mark.parametrize("path", ["/api/v1/events/", "/api/v1/review-items/", "/", "/healthz"])
def test_a_token_in_the_query_string_is_refused_and_not_repeated(api, ingest, alice, param, path, caplog):
    key = Token.objects.create(user=ingest).key
    caplog.set_level(logging.DEBUG)
    for client in (api(None), api(alice)):  # with or without a valid header
        resp = client.get(f"{path}?{param}={key}&page_size=5")
        assert resp.status_code == 400
        error = resp.json()["errors"][0]
        assert error["field"] == "query" and "Authorization header" in error["message"]
        assert key not in resp.content.decode()
    assert key not in caplog.text


@pytest.mark.django_db
def test_a_token_as_a_value_under_any_name_is_refused(api, ingest):
    key = Token.objects.create(user=ingest).key
    assert api(None).get("/api/v1/events/", {"x": f"Token {key}"}).status_code == 400
    assert api(None).post(f"/api/v1/events/?q=Bearer%20{key}", {}, format="json").status_code == 400
    assert api(ingest).get("/api/v1/events/", {"entity": "token-like-but-fine"}).status_code == 200


def test_request_lines_in_the_server_log_lose_credential_values():
    record = logging.LogRecord(
        "django.server",
        logging.WARNING,
        __file__,
        1,
        '"%s" %s %s',
        ("GET /api/v1/events/?token=abc123&q=x HTTP/1.1", 400, 10),
        None,
    )
    RedactCredentialsFilter().filter(record)
    assert record.getMessage() == '"GET /api/v1/events/?token=[redacted]&q=x HTTP/1.1" 400 10'
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "GET /?a=1&p=Token%20abc", (), None)
    RedactCredentialsFilter().filter(record)
    assert "abc" not in record.getMessage()


# ------------------------------------------------------------------ API rate limit per token


@pytest.mark.django_db
def test_api_rate_limit_is_per_token(api, ingest, alice, settings):
    settings.SECAI_API_RATE = "3/min"
    for _ in range(3):
        assert api(ingest).get("/api/v1/sources/").status_code == 200
    limited = api(ingest).get("/api/v1/sources/")
    assert limited.status_code == 429
    assert "throttled" in limited.json()["errors"][0]["message"] and int(limited["Retry-After"]) > 0
    # the limit is the token's: another client is not slowed down by this one
    assert api(alice).get("/api/v1/sources/").status_code == 200
    # nor is anything stored by a throttled submission
    SourceFactory(name="vpn").api_clients.add(ingest)
    assert api(ingest).post("/api/v1/events/", {"source": "vpn", **GOOD_EVENT}, format="json").status_code == 429
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_console_sessions_on_the_api_are_limited_per_user(client, alice, settings):
    settings.SECAI_API_RATE = "2/min"
    client.force_login(alice)
    assert [client.get("/api/v1/reason-codes/").status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.django_db
def test_without_its_cache_the_rate_limit_lets_requests_through(api, ingest, settings, monkeypatch, caplog):
    """Ingestion must go on when Redis is down: the database decides what is accepted."""
    settings.SECAI_API_RATE = "1/min"

    class Down:
        def get(self, *args, **kwargs):
            raise ConnectionError("cache down")

    monkeypatch.setattr("secai.throttling.TokenRateThrottle.cache", Down())
    assert [api(ingest).get("/api/v1/sources/").status_code for _ in range(3)] == [200, 200, 200]
    assert "rate limit not applied" in caplog.text


# ------------------------------------------------------------------ login attempts


def _login(client, username, password, addr="10.0.0.1"):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=addr)


@pytest.mark.django_db
def test_repeated_wrong_passwords_lock_the_login_with_a_clear_message(alice, settings):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client()
    for _ in range(2):
        resp = _login(client, "alice", "wrong")
        assert resp.status_code == 200 and "did not match" in resp.content.decode()
    locked = _login(client, "alice", "wrong")
    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Login temporarily locked" in page and "Too many failed logins" in page and "alice" in page
    # even the right password is refused while locked, from that address
    assert _login(client, "alice", PASSWORD).status_code == 429
    assert "_auth_user_id" not in client.session
    # the same user from another address, and another user from this one, are not locked
    assert _login(Client(), "alice", PASSWORD, addr="10.0.0.2").status_code == 302


@pytest.mark.django_db
def test_forwarded_for_counts_only_behind_the_configured_proxies(alice, settings):
    settings.AXES_FAILURE_LIMIT = 2
    client = Client()

    def attempt(forwarded: str, password: str = "wrong"):
        return client.post(
            "/login/", {"username": "alice", "password": password}, REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR=forwarded
        )

    # no proxy configured: the header is ignored, rotating it does not escape the lock
    attempt("1.1.1.1")
    attempt("2.2.2.2")
    assert attempt("3.3.3.3", PASSWORD).status_code == 429
    # behind one proxy: the address the proxy appended is the client's; what the client wrote
    # before it is not
    settings.SECAI_PROXY_COUNT = 1
    attempt("6.6.6.6, 5.5.5.5")
    attempt("7.7.7.7, 5.5.5.5")
    assert attempt("8.8.8.8, 5.5.5.5", PASSWORD).status_code == 429
    assert attempt("5.5.5.5, 4.4.4.4", PASSWORD).status_code == 302  # another client behind the proxy


@pytest.mark.django_db
def test_a_successful_login_resets_the_count(alice, settings):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client()
    for _ in range(2):
        _login(client, "alice", "wrong")
    assert _login(client, "alice", PASSWORD).status_code == 302
    client.logout()
    for _ in range(2):
        assert _login(client, "alice", "wrong").status_code == 200
    assert _login(client, "alice", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_an_admin_unlocks_a_locked_login_and_it_is_audited(alice, carol, settings):
    from axes.models import AccessAttempt

    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(2):
        _login(Client(), "alice", "wrong")
    assert _login(Client(), "alice", PASSWORD).status_code == 429
    admin = Client()
    admin.force_login(carol)
    listing = admin.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and "alice" in listing.content.decode()
    attempt = AccessAttempt.objects.get(username="alice")
    resp = admin.post("/admin/axes/accessattempt/", {"action": "unlock", "_selected_action": [attempt.pk]})
    assert resp.status_code == 302
    assert not AccessAttempt.objects.exists()
    entry = AuditEntry.objects.get(verb="login.unlock")
    assert entry.actor == carol and entry.before["username"] == "alice" and entry.before["failures"] >= 2
    assert _login(Client(), "alice", PASSWORD).status_code == 302
    # a reviewer cannot see or unlock anything there
    reviewer = Client()
    reviewer.force_login(alice)
    assert reviewer.get("/admin/axes/accessattempt/")["Location"].startswith("/admin/login/")


# ------------------------------------------------------------------ server-owned fields


@pytest.mark.django_db
@pytest.mark.parametrize(
    "field,value",
    [
        ("score", 0.01),
        ("status", "cleared"),
        ("model_version", 1),
        ("proposed_action", "allow"),
        ("explanation", []),
        ("received_at", "2026-01-01T00:00:00Z"),
        ("scored_at", "2026-01-01T00:00:00Z"),
        ("id", 5),
        ("review", None),
    ],
)
def test_clients_cannot_set_server_owned_event_fields(api, ingest, field, value):
    SourceFactory(name="vpn").api_clients.add(ingest)
    for body in ({"source": "vpn", **GOOD_EVENT, field: value}, {"source": "vpn", "events": [{**GOOD_EVENT, field: value}]}):
        resp = api(ingest).post("/api/v1/events/", body, format="json")
        assert resp.status_code == 400
        assert {"field": field, "message": "is not a known event field"} in [
            {k: v for k, v in e.items() if k != "index"} for e in resp.json()["errors"]
        ]
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_clients_cannot_set_who_decided_or_when(api, alice, bob):
    item = ReviewItemFactory()
    for extra in ({"reviewer": bob.pk}, {"created_at": "2020-01-01T00:00:00Z"}, {"state": "decided"}, {"item": 1}):
        resp = api(alice).post(
            f"/api/v1/review-items/{item.pk}/decision/", {"verdict": "approve", "reason": "other", **extra}, format="json"
        )
        assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == next(iter(extra))
    item.refresh_from_db()
    assert item.state == "open" and not item.verdicts.exists()


@pytest.mark.django_db
def test_clients_cannot_set_server_owned_source_model_and_learning_fields(api, carol):
    resp = api(carol).post(
        "/api/v1/sources/",
        {"name": "s1", "schema": {"x": "numeric"}, "id": 99, "created_at": "2020-01-01T00:00:00Z"},
        format="json",
    )
    assert resp.status_code == 400 and {e["field"] for e in resp.json()["errors"]} == {"id", "created_at"}
    source = SourceFactory(name="s2")
    assert (
        api(carol).patch("/api/v1/sources/s2/policy/", {"updated_at": "2020-01-01T00:00:00Z"}, format="json").status_code == 400
    )
    learning = api(carol).patch("/api/v1/sources/s2/learning/", {"periodic_task": "x", "updated_by": 1}, format="json")
    assert learning.status_code == 400
    from tests.models_registry.helpers import fake_model

    model = fake_model(source)
    promote = api(carol).post(f"/api/v1/models/{model.pk}/promote/", {"reason": "ok", "status": "champion"}, format="json")
    assert promote.status_code == 400
    model.refresh_from_db()
    assert model.status == "candidate"
    # there is no write route for review items or events at all
    item = ReviewItemFactory(source=source, event__source=source)
    for method in ("put", "patch", "delete"):
        assert (
            getattr(api(carol), method)(f"/api/v1/review-items/{item.pk}/", {"state": "decided"}, format="json").status_code
            == 405
        )
        assert getattr(api(carol), method)(f"/api/v1/events/{item.event_id}/", {"score": 0}, format="json").status_code == 405
    assert ReviewItem.objects.get(pk=item.pk).state == "open"


# ------------------------------------------------------------------ the audit trail is append-only


@pytest.mark.django_db
def test_the_audit_model_refuses_every_change(alice):
    item = ReviewItemFactory()
    from reviews import services

    services.review_item_claim(item=item, reviewer=alice)
    entry = AuditEntry.objects.get()
    entry.verb = "forged"
    with pytest.raises(PermissionError):
        entry.save()
    with pytest.raises(PermissionError):
        entry.delete()
    with pytest.raises(PermissionError):
        AuditEntry.objects.filter(pk=entry.pk).update(verb="forged")
    with pytest.raises(PermissionError):
        AuditEntry.objects.all().delete()
    with pytest.raises(PermissionError), transaction.atomic():
        AuditEntry.objects.bulk_update([entry], ["verb"])
    assert AuditEntry.objects.get().verb == "item.claim"


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_the_database_refuses_raw_updates_and_deletes_of_audit_entries(alice):
    if connection.vendor != "postgresql":
        pytest.skip("the trigger exists on PostgreSQL only")
    from reviews import services

    services.review_item_claim(item=ReviewItemFactory(), reviewer=alice)
    for sql in ("UPDATE reviews_auditentry SET verb = 'forged'", "DELETE FROM reviews_auditentry"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    assert AuditEntry.objects.get().verb == "item.claim"


# ------------------------------------------------------------------ production settings


def _production_env(**override) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DJANGO_SETTINGS_MODULE": "secai.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": "postgres://secai:unused@db.invalid:5432/secai",
        "CELERY_BROKER_URL": "redis://redis.invalid:6379/0",
        "CACHE_URL": "redis://redis.invalid:6379/1",
        "ALLOWED_HOSTS": "review.example.org",
        "SECAI_VAR_DIR": os.environ["SECAI_VAR_DIR"],
    }
    env.update(override)
    return {k: v for k, v in env.items() if v is not None}


def _manage(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=_production_env(**env), capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_with_the_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    "override,message",
    [
        ({"SECRET_KEY": None}, "SECRET_KEY is required"),
        ({"SECRET_KEY": "insecure-debug-only-key"}, "SECRET_KEY must be a random value"),
        ({"SECRET_KEY": "test-only-secret-key"}, "SECRET_KEY must be a random value"),
        ({"SECRET_KEY": "a" * 60}, "SECRET_KEY must be a random value"),
        ({"SECRET_KEY": "django-insecure-" + secrets.token_urlsafe(50)}, "SECRET_KEY must be a random value"),
        ({"DATABASE_URL": None}, "DATABASE_URL is required"),
        ({"CELERY_BROKER_URL": None}, "CELERY_BROKER_URL is required"),
        ({"CACHE_URL": None}, "CACHE_URL is required"),
        ({"ALLOWED_HOSTS": None}, "ALLOWED_HOSTS is required"),
    ],
)
def test_production_settings_refuse_missing_or_placeholder_secrets(override, message):
    result = _manage("check", **override)
    assert result.returncode != 0
    assert message in result.stderr


def test_production_is_never_in_debug_whatever_the_environment():
    result = _manage(
        "shell", "-c", "from django.conf import settings; print(settings.DEBUG, settings.SECURE_SSL_REDIRECT)", DEBUG="1"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["False", "True"]


def test_pages_carry_a_content_security_policy(client):
    resp = client.get("/login/")
    policy = resp["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in policy
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200 and b"<script>" not in docs.content  # Swagger UI starts from a file, not inline
