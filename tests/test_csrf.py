"""CSRF: every console form that changes something is refused without the token, changes nothing,
and every form the console renders carries the token."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from reviews.models import AuditEntry, ItemSkip, ReviewItem, Verdict
from tests.factories import EventFactory, ReviewItemFactory
from tests.test_roles_matrix import RULES, sample_kwargs, url_patterns
from tests.test_roles_matrix import world as world  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db

FORM = re.compile(rb"<form\b[^>]*>.*?</form>", re.DOTALL | re.IGNORECASE)


def console_posts():
    """(name, route keys) of every console URL that takes a POST, from the role rules."""
    for name, route, keys in url_patterns():
        if route.startswith(("admin/", "api/")) or name not in RULES:
            continue
        if any(rule.method == "post" for rule in RULES[name]):
            yield name, keys


def snapshot():
    return (
        list(ReviewItem.objects.order_by("pk").values_list("pk", "state", "claimed_by_id")),
        Verdict.objects.count(),
        ItemSkip.objects.count(),
        AuditEntry.objects.count(),
    )


@pytest.mark.parametrize("persona", ["alice", "carol"])
def test_every_console_post_needs_the_csrf_token(world, persona):  # noqa: F811
    user = world["users"][persona]
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    before = snapshot()
    posted = []
    for name, keys in console_posts():
        if name == "login":
            continue  # tested below, logged out
        path = reverse(name, kwargs=sample_kwargs(name, keys, world))
        resp = client.post(path, {"verdict": "approve", "reason": "confirmed_attack", "confirm": "yes", "reason_text": "x"})
        assert resp.status_code == 403, (name, resp.status_code)
        assert b"CSRF" in resp.content, name
        posted.append(name)
    assert snapshot() == before
    assert {
        "reviews:decide",
        "reviews:claim",
        "reviews:skip",
        "reviews:bulk",
        "reviews:policy",
        "registry:model-action",
        "logout",
    } <= set(posted)


def test_the_login_form_needs_the_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    resp = client.post("/login/", {"username": "alice", "password": "correct horse battery staple"})
    assert resp.status_code == 403 and "_auth_user_id" not in client.session


def test_the_api_with_a_session_needs_the_csrf_token_and_with_a_token_does_not(alice, api):
    """A browser session on the API is CSRF-checked (DRF's SessionAuthentication); a token in the
    Authorization header cannot be sent by another site's form, so it needs none."""
    item = ReviewItemFactory()
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    resp = client.post(f"/api/v1/review-items/{item.pk}/claim/")
    assert resp.status_code == 403 and "CSRF" in resp.json()["errors"][0]["message"]
    item.refresh_from_db()
    assert item.state == "open"
    assert api(alice).post(f"/api/v1/review-items/{item.pk}/claim/").status_code == 200


def test_every_form_the_console_renders_carries_the_token(world, carol):  # noqa: F811
    """Pages rendered for an admin (who sees every form); a POST form without the token could not
    be submitted at all, a GET form must not be used for changes."""
    client = Client()
    client.force_login(carol)
    item = world["item"]
    for i in range(2):
        ReviewItemFactory(event=EventFactory(source=world["source"], entity="twin", external_id=f"twin-{i}"))
    pages = [
        "/",
        f"/items/{item.pk}/",
        "/clusters/",
        f"/sources/{world['source'].name}/policy/",
        "/dashboard/",
        "/audit/",
        "/models/",
        "/models/monitoring/",
        f"/models/{world['model'].pk}/report/",
        f"/models/sources/{world['source'].name}/settings/",
        f"/models/sources/{world['source'].name}/monitoring/",
        f"/models/sources/{world['source'].name}/tuning/",
    ]
    forms_seen = 0
    for path in pages:
        resp = client.get(path)
        assert resp.status_code == 200, path
        for form in FORM.findall(resp.content):
            forms_seen += 1
            method = re.search(rb'method="(\w+)"', form)
            if method and method.group(1).lower() == b"post":
                assert b'name="csrfmiddlewaretoken"' in form, (path, form[:200])
    confirm = client.post("/bulk/", {"verdict": "overturn", "state": "open"})
    for form in FORM.findall(confirm.content):
        assert b'name="csrfmiddlewaretoken"' in form
    assert forms_seen > 15
