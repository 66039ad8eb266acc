"""Every URL the application serves, against every role: no access where none is granted, and no
data of a source to a reviewer not assigned to it.

The URLs are enumerated from the URL resolver, so a URL added without an entry in RULES fails
test_every_url_has_a_role_rule. Personas: alice reviews the source, dave is a reviewer assigned to
no source, carol is an admin, ingest is the source's API client, mallory has an account and no
role, None is anonymous."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from reviews import services
from reviews.models import AuditEntry, ReviewItem
from tests.conftest import _user
from tests.factories import EventFactory, ReviewItemFactory, SourceFactory
from tests.models_registry.helpers import fake_model

pytestmark = pytest.mark.django_db

PERSONAS = ["alice", "dave", "carol", "ingest", "mallory", None]
EVERYONE = frozenset(PERSONAS)
SIGNED_IN = EVERYONE - {None}
REVIEWERS = frozenset({"alice", "dave", "carol"})  # the role; dave sees no item of the source
ITEM_REVIEWERS = frozenset({"alice", "carol"})
READERS = frozenset({"alice", "dave", "carol", "ingest"})
SOURCE_READERS = frozenset({"alice", "carol", "ingest"})
SUBMITTERS = frozenset({"ingest", "carol"})
ADMINS = frozenset({"carol"})

SECRET_EXTERNAL_ID = "secret-ext-7781"
SECRET_ENTITY = "secret-entity-7781"


@dataclass(frozen=True)
class Rule:
    method: str
    allowed: frozenset
    # Personas who hold the role but not the source: they get a 404, as if the object did not exist.
    hidden_from: frozenset = frozenset()


def rules(*pairs) -> tuple[Rule, ...]:
    return tuple(Rule(method, allowed, ITEM_REVIEWERS_HIDDEN if allowed in SCOPED else frozenset()) for method, allowed in pairs)


ITEM_REVIEWERS_HIDDEN = frozenset({"dave"})
SCOPED = (ITEM_REVIEWERS, SOURCE_READERS)

# name (namespace:name) -> what each method may be used by.
RULES: dict[str, tuple[Rule, ...]] = {
    # API: events
    "api:event-list": rules(("get", READERS), ("post", SUBMITTERS)),
    "api:event-detail": rules(("get", SOURCE_READERS)),
    # API: the review queue
    "api:review-item-list": rules(("get", REVIEWERS)),
    "api:review-item-claim-next": rules(("post", REVIEWERS)),
    "api:review-item-detail": rules(("get", ITEM_REVIEWERS)),
    "api:review-item-claim": rules(("post", ITEM_REVIEWERS)),
    "api:review-item-release": rules(("post", ITEM_REVIEWERS)),
    "api:review-item-skip": rules(("post", ITEM_REVIEWERS)),
    "api:review-item-decision": rules(("post", ITEM_REVIEWERS)),
    "api:review-item-bulk": rules(("post", REVIEWERS)),
    "api:verdict-undo": rules(("post", ITEM_REVIEWERS)),
    "api:reason-code-list": rules(("get", REVIEWERS)),
    "api:reason-code-detail": rules(("get", REVIEWERS)),
    # API: sources, policies, models, learning
    "api:source-list": rules(("get", READERS), ("post", ADMINS)),
    "api:source-detail": rules(("get", SOURCE_READERS)),
    "api:source-policy": rules(("get", ADMINS), ("patch", ADMINS)),
    "api:source-retrain": rules(("post", ADMINS)),
    "api:source-learning": rules(("get", ADMINS), ("patch", ADMINS)),
    "api:source-monitoring": rules(("get", ADMINS), ("post", ADMINS)),
    "api:source-tuning": rules(("get", ADMINS)),
    "api:source-labelled-data": rules(("get", ADMINS)),
    "api:model-list": rules(("get", REVIEWERS)),
    "api:model-detail": rules(("get", ITEM_REVIEWERS)),
    "api:model-promote": rules(("post", ADMINS)),
    "api:model-rollback": rules(("post", ADMINS)),
    "api:audit-list": rules(("get", ADMINS)),
    "api:audit-detail": rules(("get", ADMINS)),
    # API: documentation (the contract is public, the data is not)
    "api:api-root": rules(("get", SIGNED_IN)),
    "api:schema": rules(("get", EVERYONE)),
    "api:docs": rules(("get", EVERYONE)),
    # console: reviewers
    "reviews:queue": rules(("get", REVIEWERS)),
    "reviews:next": rules(("post", REVIEWERS)),
    "reviews:item": rules(("get", ITEM_REVIEWERS)),
    "reviews:claim": rules(("post", ITEM_REVIEWERS)),
    "reviews:release": rules(("post", ITEM_REVIEWERS)),
    "reviews:skip": rules(("post", ITEM_REVIEWERS)),
    "reviews:decide": rules(("post", ITEM_REVIEWERS)),
    "reviews:undo": rules(("post", ITEM_REVIEWERS)),
    "reviews:bulk": rules(("post", REVIEWERS)),
    "reviews:clusters": rules(("get", REVIEWERS)),
    # console: admins
    "reviews:policy": rules(("get", ADMINS), ("post", ADMINS)),
    "reviews:dashboard": rules(("get", ADMINS)),
    "reviews:dashboard-plot": rules(("get", ADMINS)),
    "reviews:audit": rules(("get", ADMINS)),
    "registry:models": rules(("get", ADMINS)),
    "registry:monitoring-overview": rules(("get", ADMINS)),
    "registry:report": rules(("get", ADMINS)),
    "registry:report-plot": rules(("get", ADMINS)),
    "registry:model-action": rules(("post", ADMINS)),
    "registry:retrain": rules(("post", ADMINS)),
    "registry:settings": rules(("get", ADMINS), ("post", ADMINS)),
    "registry:monitoring": rules(("get", ADMINS)),
    "registry:monitoring-run": rules(("post", ADMINS)),
    "registry:monitoring-plot": rules(("get", ADMINS)),
    "registry:tuning": rules(("get", ADMINS)),
    "registry:export": rules(("get", ADMINS)),
    # API: actions, lists and appeals
    "api:executor-list": rules(("get", ADMINS), ("post", ADMINS)),
    "api:executor-detail": rules(("get", ADMINS), ("patch", ADMINS)),
    "api:action-type-list": rules(("get", ADMINS), ("post", ADMINS)),
    "api:action-type-detail": rules(("get", ADMINS), ("patch", ADMINS)),
    "api:subscription-list": rules(("get", ADMINS), ("post", ADMINS)),
    "api:subscription-detail": rules(("get", ADMINS), ("patch", ADMINS)),
    "api:delivery-list": rules(("get", ADMINS)),
    "api:delivery-detail": rules(("get", ADMINS)),
    "api:delivery-retry": rules(("post", ADMINS)),
    "api:list-entry-list": rules(("get", REVIEWERS), ("post", ADMINS)),
    "api:list-entry-detail": rules(("get", ITEM_REVIEWERS), ("delete", ADMINS)),
    "api:appeals": rules(("get", READERS), ("post", SUBMITTERS)),
    "api:appeal-detail": rules(("get", SOURCE_READERS)),
    # console: actions (lists are read by reviewers, changed by admins)
    "actions:overview": rules(("get", ADMINS), ("post", ADMINS)),
    "actions:type": rules(("get", ADMINS), ("post", ADMINS)),
    "actions:executors": rules(("get", ADMINS), ("post", ADMINS)),
    "actions:executor": rules(("get", ADMINS), ("post", ADMINS)),
    "actions:subscription-new": rules(("get", ADMINS), ("post", ADMINS)),
    "actions:subscription": rules(("get", ADMINS), ("post", ADMINS)),
    "actions:deliveries": rules(("get", ADMINS)),
    "actions:retry": rules(("post", ADMINS)),
    "actions:lists": rules(("get", REVIEWERS), ("post", ADMINS)),
    "actions:list-remove": rules(("post", ADMINS)),
    # public
    "login": rules(("get", EVERYONE)),
    "logout": rules(("post", EVERYONE)),
    "healthz": rules(("get", EVERYONE)),
    "readyz": rules(("get", EVERYONE)),
}
# Every Django admin URL (137 of them, one set per registered model) is for admins only; a page
# an admin may not use either (deleting, adding an audit entry) answers them with a 403.
ADMIN_SITE = "admin:"
ADMIN_PUBLIC = {"admin:login", "admin:logout"}  # logging out is harmless to anyone


def url_patterns(patterns=None, prefix: str = "", namespace: str = ""):
    """(name, route, keyword arguments) of every URL pattern, resolvers walked recursively."""
    for p in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(p, URLResolver):
            ns = ":".join(x for x in (namespace, p.namespace) if x)
            yield from url_patterns(p.url_patterns, prefix + str(p.pattern), ns)
        elif isinstance(p, URLPattern):
            name = ":".join(x for x in (namespace, p.name or "") if x)
            regex = p.pattern.regex
            yield name, prefix + str(p.pattern), sorted(regex.groupindex)


def test_every_url_has_a_role_rule():
    missing = [
        (name, route)
        for name, route, _ in url_patterns()
        if name not in RULES and not name.startswith(ADMIN_SITE) and not route.startswith("admin/")
    ]
    assert missing == [], f"URLs without an entry in RULES (say who may use them): {missing}"
    names = {name for name, _, _ in url_patterns()}
    assert set(RULES) <= names, f"RULES for URLs that no longer exist: {set(RULES) - names}"


@pytest.fixture
def world(alice, carol, ingest, mallory):
    """One source that alice reviews and ingest submits to, with an open item, a decided item
    with alice's verdict, a model version and audit entries; dave reviews nothing."""
    dave = _user("dave", "reviewers")
    source = SourceFactory(name="matrix-src", reviewers=[alice])
    source.api_clients.add(ingest)
    event = EventFactory(source=source, external_id=SECRET_EXTERNAL_ID, entity=SECRET_ENTITY)
    item = ReviewItemFactory(event=event)
    decided = ReviewItemFactory(event=EventFactory(source=source, external_id=f"{SECRET_EXTERNAL_ID}-b", entity=SECRET_ENTITY))
    verdict = services.verdict_submit(item=decided, reviewer=alice, verdict="overturn", reason="known_benign")
    model = fake_model(source, report={"decision": "promote", "reason": "test"})
    return {
        **_action_objects(item),
        "users": {"alice": alice, "dave": dave, "carol": carol, "ingest": ingest, "mallory": mallory, None: None},
        "source": source,
        "item": item,
        "verdict": verdict,
        "model": model,
        "audit": AuditEntry.objects.order_by("id").first(),
    }


def _action_objects(item: ReviewItem) -> dict:
    """One of each actions object the URLs name, on the matrix source's open item."""
    from actions.models import ActionType, Appeal, Delivery, Executor, ListEntry, Subscription

    executor = Executor.objects.create(name="ex", kind="log")
    action_type, _ = ActionType.objects.get_or_create(source=item.source, name="deny", defaults={"label": "deny", "severity": 2})
    delivery = Delivery.objects.create(
        kind="execute", event=item.event, item=item, source=item.source, action="deny", executor=executor,
        idempotency_key=f"k-{item.pk}", body="{}", state="failed", next_attempt_at=item.created_at,
    )  # fmt: skip
    return {
        "executor": executor,
        "action_type": action_type,
        "delivery": delivery,
        "entry": ListEntry.objects.create(source=item.source, kind="allow", entity=SECRET_ENTITY, created_by="test"),
        "subscription": Subscription.objects.create(
            name="s", url="https://example.org/", secret="x" * 20, topics=["item.opened"]
        ),
        "appeal": Appeal.objects.create(source=item.source, event=item.event, item=item, external_id="a-1"),
    }


def sample_kwargs(name: str, keys: list[str], w: dict) -> dict:
    by_prefix = {
        "api:executor-": "executor",
        "actions:executor": "executor",
        "api:action-type-": "action_type",
        "actions:type": "action_type",
        "api:subscription-": "subscription",
        "actions:subscription": "subscription",
        "api:delivery-": "delivery",
        "actions:retry": "delivery",
        "api:list-entry-": "entry",
        "actions:list-remove": "entry",
        "api:appeal-": "appeal",
    }
    for prefix, key in by_prefix.items():
        if name.startswith(prefix) and "pk" in keys:
            return {"pk": w[key].pk}
    pk = {
        "api:event-detail": w["item"].event_id,
        "api:verdict-undo": w["verdict"].pk,
        "reviews:undo": w["verdict"].pk,
        "api:audit-detail": w["audit"].pk,
    }.get(name)
    if pk is None:
        pk = w["model"].pk if "model" in name or name.startswith("registry:") else w["item"].pk
    values = {
        "pk": pk,
        "name": "queue" if name == "reviews:dashboard-plot" else w["source"].name,
        "code": "other",
        "fmt": "csv",
        "kind": "psi" if name == "registry:monitoring-plot" else "pr",
        "verb": "promote",
        "format": "json",
        "app_label": "reviews",
        "object_id": str(w["source"].pk),
        "id": str(w["users"]["carol"].pk),
        "content_type_id": ContentType.objects.get_for_model(w["source"]).pk,
        "url": "no-such-page/",
    }
    return {k: values[k] for k in keys}


def request(persona, method: str, path: str, w: dict, api: bool):
    user = w["users"][persona]
    if api:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user=user)  # token or session: the same permission classes
        return getattr(client, method)(path, {}, format="json")
    client = Client()
    if user is not None:
        client.force_login(user)
    return getattr(client, method)(path)


def assert_no_data(resp, where):
    body = b"".join(resp.streaming_content) if resp.streaming else resp.content
    assert SECRET_EXTERNAL_ID.encode() not in body and SECRET_ENTITY.encode() not in body, where


def check(persona, rule: Rule, path: str, resp, api: bool, admin_site: bool = False):
    where = (persona, rule.method, path, resp.status_code)
    assert resp.status_code < 500, where
    redirected_to_login = resp.status_code == 302 and re.match(r"^/(admin/)?login/\?next=", resp.get("Location", ""))
    if persona in rule.hidden_from:
        assert resp.status_code == 404, where
        assert_no_data(resp, where)
    elif persona in rule.allowed:
        assert resp.status_code not in (401, 403) and not redirected_to_login, where
    elif api:
        assert resp.status_code == (401 if persona is None else 403), where
        assert set(resp.json()) == {"errors"}, where
    elif admin_site:
        assert redirected_to_login and resp["Location"].startswith("/admin/login/"), where
    else:
        assert redirected_to_login if persona is None else resp.status_code == 403, where
        assert_no_data(resp, where)


@pytest.mark.parametrize("persona", PERSONAS)
def test_every_url_against_every_role(persona, world):
    checked = 0
    for name, route, keys in url_patterns():
        admin_site = name.startswith(ADMIN_SITE) or route.startswith("admin/")
        if admin_site:
            if not name or name == ADMIN_SITE.rstrip(":"):
                path = "/admin/no-such-page/"
            else:
                path = reverse(name, kwargs=sample_kwargs(name, keys, world))
            method = "post" if name == "admin:logout" else "get"
            allowed = EVERYONE if name in ADMIN_PUBLIC else ADMINS
            resp = request(persona, method, path, world, api=False)
            rule = Rule(method, allowed)
            if persona == "carol":
                assert resp.status_code < 500 and not resp.get("Location", "").startswith("/admin/login/"), (name, path)
            elif persona not in allowed:
                check(persona, rule, path, resp, api=False, admin_site=True)
            checked += 1
            continue
        path = reverse(name, kwargs=sample_kwargs(name, keys, world))
        api = path.startswith("/api/")
        for rule in RULES[name]:
            resp = request(persona, rule.method, path, world, api)
            check(persona, rule, path, resp, api)
            if persona == "dave" and resp.status_code < 400:
                assert_no_data(resp, (name, rule.method))  # the role, but not this source: no item of it
            checked += 1
    assert checked > 180


def test_a_reviewer_of_another_source_sees_nothing_of_this_one(world, api):
    """dave reviews another source: its item is his, this source's item stays invisible in every view."""
    dave, alice = world["users"]["dave"], world["users"]["alice"]
    other = SourceFactory(name="other-src", reviewers=[dave])
    mine = ReviewItemFactory(event=EventFactory(source=other, external_id="dave-item", entity="dave-entity"))
    client = Client()
    client.force_login(dave)
    queue = client.get("/?state=all")
    assert b"dave-item" in queue.content and SECRET_EXTERNAL_ID.encode() not in queue.content
    assert [s[0] for s in queue.context["sources"].values_list("name")] == ["other-src"]
    assert queue.context["counts"]["state"]["all"] == 1  # the filter bar counts only his source
    listed = api(dave).get("/api/v1/review-items/?state=all").json()["results"]
    assert [r["id"] for r in listed] == [mine.pk]
    assert api(dave).get("/api/v1/review-items/?source=matrix-src").json()["results"] == []
    assert [e["external_id"] for e in api(dave).get("/api/v1/events/").json()["results"]] == ["dave-item"]
    assert [s["name"] for s in api(dave).get("/api/v1/sources/").json()] == ["other-src"]
    assert api(dave).post("/api/v1/review-items/claim-next/?source=matrix-src").status_code == 404
    # claim-next hands him his own source's item, never the higher-priority one of matrix-src
    world["item"].__class__.objects.filter(pk=world["item"].pk).update(priority=99)
    claimed = api(dave).post("/api/v1/review-items/claim-next/").json()
    assert claimed["id"] == mine.pk
    # bulk over ids of both sources decides only his own
    services.review_item_release(item=ReviewItem.objects.get(pk=mine.pk), reviewer=dave)
    result = api(dave).post(
        "/api/v1/review-items/bulk-decision/",
        {"ids": [mine.pk, world["item"].pk], "verdict": "overturn", "reason": "known_benign"},
        format="json",
    )
    body = result.json()
    assert re.fullmatch(r"[0-9a-f]{32}", body.pop("bulk_id"))
    # the other source's item is skipped as an id of no item he can review, nothing more told
    assert body == {
        "decided": 1,
        "first_opinions": 0,
        "skipped": [{"id": world["item"].pk, "message": "No such item among the sources you review."}],
    }
    world["item"].refresh_from_db()
    assert world["item"].state == "open" and world["item"].verdicts.count() == 0
    # clusters and the console's bulk confirmation see only his source
    ReviewItemFactory.create_batch(3, event__source=world["source"], event__entity="twin")
    assert client.get("/clusters/").context["clusters"] == []
    confirm = client.post("/bulk/", {"verdict": "overturn", "state": "open"})
    assert confirm.context["count"] == 0
    # and alice, assigned to matrix-src only, does not see dave's source
    assert "dave-item" not in {e["external_id"] for e in api(alice).get("/api/v1/events/").json()["results"]}


def test_the_service_layer_refuses_unassigned_reviewers_too(world):
    """Views are not the only way in: the services check the assignment themselves."""
    dave = world["users"]["dave"]
    with pytest.raises(services.ItemNotFound):
        services.review_item_claim(item=world["item"], reviewer=dave)
    with pytest.raises(services.ItemNotFound):
        services.verdict_submit(item=world["item"], reviewer=dave, verdict="approve", reason="confirmed_attack")
    assert services.review_item_claim_next(reviewer=dave) is None


def test_assignment_is_editable_by_admins_in_the_django_admin(world):
    carol, dave = world["users"]["carol"], world["users"]["dave"]
    source = world["source"]
    client = Client()
    client.force_login(carol)
    page = client.get(f"/admin/reviews/source/{source.pk}/change/")
    assert page.status_code == 200 and b'name="reviewers"' in page.content
    # only reviewers are offered
    offered = set(page.context["adminform"].form.fields["reviewers"].queryset.values_list("username", flat=True))
    assert offered == {"alice", "dave"}
    resp = client.post(
        f"/admin/reviews/source/{source.pk}/change/",
        {"name": source.name, "description": "", "schema": '{"bytes": "numeric"}', "reviewers": [dave.pk], "api_clients": []},
    )
    assert resp.status_code == 302, resp.content[:500]
    assert list(source.reviewers.values_list("username", flat=True)) == ["dave"]
    services.review_item_claim(item=world["item"], reviewer=dave)  # now he may
