"""Every console page and API endpoint against every persona: no data where no role grants it."""

import pytest
from django.contrib.auth.models import User

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
    ("get", "/api/v1/reason-codes/", {"alice", "carol"}),
    ("get", "/api/v1/sources/", {"alice", "carol", "ingest"}),
    ("get", "/api/v1/sources/{source}/policy/", {"carol"}),
    ("get", "/api/v1/models/", {"alice", "carol"}),
    ("get", "/api/v1/executors/", {"carol"}),
    ("get", "/api/v1/executors/{executor}/", {"carol"}),
    ("patch", "/api/v1/executors/{executor}/", {"carol"}),
    ("get", "/api/v1/action-types/", {"carol"}),
    ("get", "/api/v1/action-types/{action_type}/", {"carol"}),
    ("patch", "/api/v1/action-types/{action_type}/", {"carol"}),
    ("get", "/api/v1/subscriptions/", {"carol"}),
    ("get", "/api/v1/subscriptions/{subscription}/", {"carol"}),
    ("get", "/api/v1/appeals/{appeal}/", {"alice", "carol", "ingest"}),
    ("get", "/api/v1/deliveries/", {"carol"}),
    ("get", "/api/v1/deliveries/{delivery}/", {"carol"}),
    ("get", "/api/v1/list-entries/", {"alice", "carol"}),
    ("get", "/api/v1/list-entries/{entry}/", {"alice", "carol"}),
    ("get", "/api/v1/appeals/", {"alice", "carol", "ingest"}),
]
# Writes whose success answer is not 200/204 but must still be refused to the wrong roles.
API_REFUSED = [
    ("post", "/api/v1/executors/", {"carol"}),
    ("post", "/api/v1/action-types/", {"carol"}),
    ("post", "/api/v1/subscriptions/", {"carol"}),
    ("post", "/api/v1/list-entries/", {"carol"}),
    ("delete", "/api/v1/list-entries/{entry}/", {"carol"}),
    ("post", "/api/v1/deliveries/{delivery}/retry/", {"carol"}),
    ("post", "/api/v1/appeals/", {"carol", "ingest"}),
]
PAGES = [
    ("get", "/", {"alice", "carol"}),
    ("get", "/items/{item}/", {"alice", "carol"}),
    ("get", "/clusters/", {"alice", "carol"}),
    ("get", "/models/", {"carol"}),
    ("get", "/sources/{source}/policy/", {"carol"}),
    ("get", "/actions/", {"carol"}),
    ("get", "/actions/types/{action_type}/", {"carol"}),
    ("get", "/actions/executors/", {"carol"}),
    ("get", "/actions/executors/{executor}/", {"carol"}),
    ("get", "/actions/subscriptions/new/", {"carol"}),
    ("get", "/actions/subscriptions/{subscription}/", {"carol"}),
    ("get", "/actions/deliveries/", {"carol"}),
    ("get", "/actions/lists/", {"alice", "carol"}),
]
PAGES_POST = [
    ("post", "/actions/deliveries/{delivery}/retry/", {"carol"}),
    ("post", "/actions/lists/{entry}/remove/", {"carol"}),
]


def _objects():
    """One of each object the paths name, with the item's event actioned through an executor."""
    from actions.models import ActionType, Appeal, Delivery, Executor, ListEntry, Subscription

    item = ReviewItemFactory()
    executor = Executor.objects.create(name="ex", kind="log")
    action_type = ActionType.objects.create(source=item.source, name="deny", label="deny", severity=2, executor=executor)
    delivery = Delivery.objects.create(
        kind="execute", event=item.event, item=item, source=item.source, action="deny", executor=executor,
        idempotency_key=f"k-{item.pk}", body="{}", state="failed", next_attempt_at=item.created_at,
    )  # fmt: skip
    entry = ListEntry.objects.create(source=item.source, kind="allow", entity="e", created_by="test")
    subscription = Subscription.objects.create(name="s", url="https://example.org/", secret="x" * 20, topics=["item.opened"])
    appeal = Appeal.objects.create(source=item.source, event=item.event, item=item, external_id="a-1")
    # The API client emits this source's events, so it may read the source's appeals (and only those).
    item.source.api_clients.add(*User.objects.filter(username="ingest"))
    return {
        "item": item.pk,
        "source": item.source.name,
        "executor": executor.pk,
        "action_type": action_type.pk,
        "delivery": delivery.pk,
        "entry": entry.pk,
        "subscription": subscription.pk,
        "appeal": appeal.pk,
        "_item": item,
    }


@pytest.mark.parametrize("persona", PERSONAS)
def test_api_endpoints_per_role(api, request, persona):
    user = request.getfixturevalue(persona) if persona else None
    objects = _objects()
    for method, template, allowed in API:
        path = template.format(**objects)
        resp = getattr(api(user), method)(path, {}, format="json") if method != "get" else api(user).get(path)
        if persona in allowed:
            assert resp.status_code in (200, 204), (persona, path, resp.status_code)
        else:
            assert resp.status_code == (401 if user is None else 403), (persona, path, resp.status_code)
            assert set(resp.json()) == {"errors"}  # an error, never data
    for method, template, allowed in API_REFUSED:
        path = template.format(**objects)
        resp = getattr(api(user), method)(path, {}, format="json")
        if persona in allowed:
            assert resp.status_code not in (401, 403), (persona, path, resp.status_code)
        else:
            assert resp.status_code == (401 if user is None else 403), (persona, path, resp.status_code)


@pytest.mark.parametrize("persona", PERSONAS)
def test_console_pages_per_role(client, request, persona):
    user = request.getfixturevalue(persona) if persona else None
    if user is not None:
        assert client.login(username=user.username, password=PASSWORD)
    objects = _objects()
    item = objects["_item"]
    for method, template, allowed in PAGES + PAGES_POST:
        path = template.format(**objects)
        resp = getattr(client, method)(path)
        if persona in allowed:
            assert resp.status_code == (302 if method == "post" else 200), (persona, path)
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
    for path in ("/next/", f"/items/{item.pk}/claim/", f"/items/{item.pk}/decide/", "/bulk/"):
        assert client.post(path, {"verdict": "approve", "reason": "other"}).status_code == 403, path
    item.refresh_from_db()
    assert item.state == "open"
