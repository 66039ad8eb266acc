"""Every console page and API endpoint against every persona: no data where no role grants it."""

import pytest

from tests.conftest import PASSWORD
from tests.factories import ReviewItemFactory

pytestmark = pytest.mark.django_db

PERSONAS = ["alice", "carol", "mallory", "ingest", None]


def _allowed(rule, persona):
    return persona in rule


# (method, path template, personas allowed). {item} and {source} are filled in per test.
API = [
    ("get", "/api/v1/events/", {"alice", "carol", "ingest"}),
    ("get", "/api/v1/review-items/", {"alice", "carol"}),
    ("get", "/api/v1/review-items/{item}/", {"alice", "carol"}),
    ("post", "/api/v1/review-items/claim-next/", {"alice", "carol"}),
    ("post", "/api/v1/review-items/{item}/claim/", {"alice", "carol"}),
    ("post", "/api/v1/review-items/{item}/skip/", {"alice", "carol"}),
    ("get", "/api/v1/reason-codes/", {"alice", "carol"}),
    ("get", "/api/v1/sources/", {"alice", "carol", "ingest"}),
    ("get", "/api/v1/sources/{source}/policy/", {"carol"}),
    ("get", "/api/v1/models/", {"alice", "carol"}),
]
PAGES = [
    ("get", "/", {"alice", "carol"}),
    ("get", "/items/{item}/", {"alice", "carol"}),
    ("get", "/clusters/", {"alice", "carol"}),
    ("get", "/models/", {"carol"}),
    ("get", "/sources/{source}/policy/", {"carol"}),
]


@pytest.mark.parametrize("persona", PERSONAS)
def test_api_endpoints_per_role(api, request, persona):
    user = request.getfixturevalue(persona) if persona else None
    item = ReviewItemFactory()
    for method, template, allowed in API:
        path = template.format(item=item.pk, source=item.source.name)
        resp = getattr(api(user), method)(path)
        if persona in allowed:
            assert resp.status_code in (200, 204), (persona, path, resp.status_code)
        else:
            assert resp.status_code == (401 if user is None else 403), (persona, path, resp.status_code)
            assert set(resp.json()) == {"errors"}  # an error, never data


@pytest.mark.parametrize("persona", PERSONAS)
def test_console_pages_per_role(client, request, persona):
    user = request.getfixturevalue(persona) if persona else None
    if user is not None:
        assert client.login(username=user.username, password=PASSWORD)
    item = ReviewItemFactory()
    for method, template, allowed in PAGES:
        path = template.format(item=item.pk, source=item.source.name)
        resp = getattr(client, method)(path)
        if persona in allowed:
            assert resp.status_code == 200, (persona, path)
        elif user is None:
            assert resp.status_code == 302 and resp["Location"].startswith("/login/"), path
        else:
            assert resp.status_code == 403, (persona, path)
            assert item.event.external_id not in resp.content.decode()


def test_console_forms_require_csrf(alice):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.login(username="alice", password=PASSWORD)
    item = ReviewItemFactory()
    for path in ("/next/", f"/items/{item.pk}/claim/", f"/items/{item.pk}/skip/", f"/items/{item.pk}/decide/", "/bulk/"):
        assert client.post(path, {"verdict": "approve", "reason": "other"}).status_code == 403, path
    item.refresh_from_db()
    assert item.state == "open"
