"""Every API operation that takes a body, fed every kind of malformed body: a 4xx in the error
shape, never a 500, and nothing stored or changed. Then each kind of bad event named in the
contract, through POST /api/v1/events/."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection
from django.utils import timezone

from actions import services as actions_services
from actions.models import ActionType, Appeal, Delivery, Executor, ListEntry, Subscription
from models_registry.models import LearningSettings, ModelVersion
from reviews import services
from reviews.models import AuditEntry, Event, ItemSkip, Label, Policy, ReviewItem, Source, Verdict
from tests.factories import EventFactory, ReviewItemFactory, SourceFactory
from tests.models_registry.helpers import fake_model

pytestmark = pytest.mark.django_db

BIG = str(2**64)  # beyond a 64-bit integer
# name -> raw body; sent with Content-Type: application/json
MALFORMED = {
    "truncated": b'{"source": "vpn", "events": [',
    "not json": b"hello",
    "trailing garbage": b'{"a": 1} x',
    "NaN literal": b'{"verdict": NaN, "reason": NaN, "ids": [NaN], "review_threshold": NaN, "reason_text": NaN}',
    "Infinity literal": b'{"min_score": Infinity, "review_threshold": -Infinity, "ids": [Infinity]}',
    "lone surrogate": b'{"verdict": "\\ud800", "reason": "\\udfff", "note": "\\ud800", "name": "\\ud800"}',
    "NUL in strings": b'{"verdict": "approve\\u0000", "reason": "other\\u0000", "name": "a\\u0000", "reason_text": "\\u0000"}',
    "huge numbers": ('{"ids": [' + BIG + '], "review_threshold": ' + BIG + ', "min_labels_per_class": ' + BIG + "}").encode(),
    "deep nesting": b'{"a": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    "top-level array": b"[1, 2, 3]",
    "top-level string": b'"approve"',
    "top-level null": b"null",
    "wrong types": b'{"verdict": 1, "reason": ["other"], "note": {"x": 1}, "ids": "1,2", "thresholds": "high", "name": 5, "schema": []}',
    "invalid UTF-8": b'{"verdict": "\xff\xfe"}',
}


@pytest.fixture
def world(alice, carol, ingest):
    source = SourceFactory(name="vpn")
    source.api_clients.add(ingest)
    item = ReviewItemFactory(event=EventFactory(source=source))
    decided = ReviewItemFactory(event=EventFactory(source=source))
    verdict = services.verdict_submit(item=decided, reviewer=alice, verdict="approve", reason="confirmed_attack")
    model = fake_model(source)
    actions_services.action_types_seed(source=source)
    executor = Executor.objects.create(name="hook", url="http://127.0.0.1:9/act", secret="s" * 16)
    subscription = Subscription.objects.create(
        name="feed", url="http://127.0.0.1:9/feed", secret="s" * 16, topics=["item.opened"]
    )
    failed = Delivery.objects.create(
        kind="event",
        subscription=subscription,
        topic="item.opened",
        idempotency_key="failed-1",
        body="{}",
        state="failed",
        attempts=3,
        next_attempt_at=timezone.now(),
    )
    entry = actions_services.list_entry_add(source=source, kind="block", entity="mallet", actor=carol)
    return {
        "alice": alice,
        "carol": carol,
        "ingest": ingest,
        "decided_event": decided.event.external_id,
        "ids": {
            "item": item.pk,
            "verdict": verdict.pk,
            "model": model.pk,
            "action_type": ActionType.objects.get(source=source, name="deny").pk,
            "executor": executor.pk,
            "subscription": subscription.pk,
            "delivery": failed.pk,
            "entry": entry.pk,
        },
    }


# (method, path, persona) of every operation that reads a body, or should refuse one; the path's
# {placeholders} are keys of world["ids"]
OPERATIONS = [
    ("post", "/api/v1/events/", "ingest"),
    ("post", "/api/v1/review-items/{item}/decision/", "alice"),
    ("post", "/api/v1/review-items/{item}/claim/", "alice"),
    ("post", "/api/v1/review-items/{item}/release/", "alice"),
    ("post", "/api/v1/review-items/{item}/skip/", "alice"),
    ("post", "/api/v1/review-items/claim-next/", "alice"),
    ("post", "/api/v1/review-items/bulk-decision/", "alice"),
    ("post", "/api/v1/verdicts/{verdict}/undo/", "alice"),
    ("post", "/api/v1/sources/", "carol"),
    ("patch", "/api/v1/sources/vpn/policy/", "carol"),
    ("patch", "/api/v1/sources/vpn/learning/", "carol"),
    ("post", "/api/v1/sources/vpn/retrain/", "carol"),
    ("post", "/api/v1/sources/vpn/monitoring/", "carol"),
    ("post", "/api/v1/models/{model}/promote/", "carol"),
    ("post", "/api/v1/models/{model}/rollback/", "carol"),
    ("post", "/api/v1/executors/", "carol"),
    ("patch", "/api/v1/executors/{executor}/", "carol"),
    ("post", "/api/v1/action-types/", "carol"),
    ("patch", "/api/v1/action-types/{action_type}/", "carol"),
    ("post", "/api/v1/subscriptions/", "carol"),
    ("patch", "/api/v1/subscriptions/{subscription}/", "carol"),
    ("post", "/api/v1/deliveries/{delivery}/retry/", "carol"),
    ("post", "/api/v1/list-entries/", "carol"),
    ("delete", "/api/v1/list-entries/{entry}/", "carol"),
    ("post", "/api/v1/appeals/", "ingest"),
]


def state() -> tuple:
    """Everything a write could touch."""
    return (
        Event.objects.count(),
        list(ReviewItem.objects.order_by("pk").values_list("pk", "state", "claimed_by_id")),
        list(Verdict.objects.order_by("pk").values_list("pk", "undone_at")),
        list(ItemSkip.objects.order_by("pk").values_list("pk", "item_id", "reviewer_id", "until")),
        Label.objects.count(),
        Source.objects.count(),
        list(Policy.objects.order_by("pk").values_list("thresholds", "review_threshold", "four_eyes_actions")),
        LearningSettings.objects.count(),
        list(ModelVersion.objects.order_by("pk").values_list("pk", "status")),
        AuditEntry.objects.count(),
        list(Executor.objects.order_by("pk").values_list("pk", "name", "kind", "url", "secret", "max_attempts", "active")),
        list(
            ActionType.objects.order_by("pk").values_list(
                "pk", "name", "label", "severity", "executor_id", "mode", "deadline_minutes", "deadline_fallback"
            )
        ),
        list(Subscription.objects.order_by("pk").values_list("pk", "name", "url", "secret", "topics", "source_id", "active")),
        list(Delivery.objects.order_by("pk").values_list("pk", "state", "attempts")),
        list(ListEntry.objects.order_by("pk").values_list("pk", "kind", "entity", "action", "expires_at", "removed_at")),
        list(Appeal.objects.order_by("pk").values_list("pk", "state")),
    )


def test_the_operations_list_covers_every_write_in_the_schema(client):
    schema = client.get("/api/v1/schema/?format=json").json()
    writes = {
        (method, path) for path, ops in schema["paths"].items() for method in ops if method in ("post", "put", "patch", "delete")
    }
    listed = {(m, re.sub(r"\{\w+\}", "{id}", p).replace("/vpn/", "/{name}/")) for m, p, _ in OPERATIONS}
    assert writes == listed


@pytest.mark.parametrize("kind", list(MALFORMED))
@pytest.mark.parametrize("method,template,persona", OPERATIONS)
def test_malformed_bodies_get_a_4xx_and_change_nothing(api, world, method, template, persona, kind):
    path = template.format(**world["ids"])
    before = state()
    resp = getattr(api(world[persona]), method)(path, MALFORMED[kind], content_type="application/json")
    assert 400 <= resp.status_code < 500, (path, kind, resp.status_code, resp.content[:300])
    errors = resp.json()["errors"]
    assert errors and all(e["field"] and e["message"] for e in errors)
    json.dumps(errors).encode("utf-8")  # the answer itself is clean UTF-8
    assert state() == before, (path, kind)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # the request left the transaction usable
            cursor.execute("SELECT 1")


@pytest.mark.parametrize("method,template,persona", OPERATIONS)
def test_a_body_that_is_not_json_is_a_415(api, world, method, template, persona):
    path = template.format(**world["ids"])
    before = state()
    resp = getattr(api(world[persona]), method)(path, "verdict=approve", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 415 and resp.json()["errors"][0]["message"]
    assert state() == before


# Well-formed bodies for the writes of the actions API, then the same bodies with one hostile value:
# text the database cannot store or look up (NUL), numbers beyond any column, wrong types.
GOOD_BODIES = {
    "/api/v1/executors/": {"name": "hook2", "kind": "webhook", "url": "http://127.0.0.1:9/x", "secret": "s" * 16},
    "/api/v1/action-types/": {"source": "vpn", "name": "quarantine", "label": "quarantine", "severity": 5, "executor": "hook"},
    "/api/v1/subscriptions/": {"name": "feed2", "url": "http://127.0.0.1:9/y", "secret": "s" * 16, "topics": ["item.decided"]},
    "/api/v1/list-entries/": {"source": "vpn", "kind": "block", "entity": "eve", "action": "deny"},
    "/api/v1/appeals/": {"source": "vpn", "event": "{decided_event}", "appeal_id": "a-1", "statement": "it was me"},
}
PERSONA = {"/api/v1/appeals/": "ingest"}


class RawJSON(str):
    """A value written into the body as it is, not as a JSON string."""


HOSTILE_VALUES = [
    ("/api/v1/executors/", "name", "ho\x00ok"),
    ("/api/v1/executors/", "url", "http://127.0.0.1:9/\x00"),
    ("/api/v1/executors/", "max_attempts", 2**64),
    ("/api/v1/executors/", "timeout_seconds", RawJSON("1e309")),  # Python's json reads it as infinity
    ("/api/v1/executors/", "kind", ["webhook"]),
    ("/api/v1/action-types/", "source", "vpn\x00"),
    ("/api/v1/action-types/", "source", 7),
    ("/api/v1/action-types/", "executor", "hook\x00"),
    ("/api/v1/action-types/", "executor", {"name": "hook"}),
    ("/api/v1/action-types/", "label", "a\x00"),
    ("/api/v1/action-types/", "severity", 2**64),
    ("/api/v1/action-types/", "deadline_minutes", 2**64),
    ("/api/v1/action-types/", "mode", "act\x00"),
    ("/api/v1/subscriptions/", "source", "vpn\x00"),
    ("/api/v1/subscriptions/", "topics", ["item.decided\x00"]),
    ("/api/v1/subscriptions/", "topics", "item.decided"),
    ("/api/v1/subscriptions/", "max_attempts", -(2**64)),
    ("/api/v1/list-entries/", "source", "vpn\x00"),
    ("/api/v1/list-entries/", "entity", "eve\x00"),
    ("/api/v1/list-entries/", "action", "deny\x00"),
    ("/api/v1/list-entries/", "reason", "\x00"),
    ("/api/v1/list-entries/", "expires_at", "9999-12-31T23:59:59-01:00"),
    ("/api/v1/list-entries/", "expires_at", 1764496800),
    ("/api/v1/appeals/", "source", "vpn\x00"),
    ("/api/v1/appeals/", "event", "e\x00"),
    ("/api/v1/appeals/", "appeal_id", "a\x00"),
    ("/api/v1/appeals/", "statement", "\x00"),
]


def _good_body(world, path: str) -> dict:
    body = dict(GOOD_BODIES[path])
    if body.get("event") == "{decided_event}":
        body["event"] = world["decided_event"]
    return body


@pytest.mark.parametrize("path", list(GOOD_BODIES))
def test_the_well_formed_actions_bodies_are_accepted(api, world, path):
    # Without this the refusals below could come from a body that is wrong in some other way.
    resp = api(world[PERSONA.get(path, "carol")]).post(path, _good_body(world, path), format="json")
    assert resp.status_code == 201, resp.content[:300]


@pytest.mark.parametrize("path,field,value", HOSTILE_VALUES)
def test_hostile_values_in_the_actions_api_are_refused_naming_the_field(api, world, path, field, value):
    before = state()
    body = json.dumps({**_good_body(world, path), field: "<raw>" if isinstance(value, RawJSON) else value})
    if isinstance(value, RawJSON):
        body = body.replace('"<raw>"', value)
    resp = api(world[PERSONA.get(path, "carol")]).post(path, body, content_type="application/json")
    assert resp.status_code == 400, (field, value, resp.status_code, resp.content[:300])
    fields = {e["field"] for e in resp.json()["errors"]}
    assert fields and all(f == field or f.startswith(f"{field}.") for f in fields), fields  # "topics.0": the list's item
    assert state() == before
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")


@pytest.mark.parametrize(
    "path", ["/api/v1/review-items/{big}/", "/api/v1/events/{big}/", "/api/v1/models/{big}/", "/api/v1/audit/{big}/"]
)
def test_ids_beyond_64_bits_in_urls_are_404s(api, carol, path):
    resp = api(carol).get(path.format(big=BIG))
    assert resp.status_code == 404 and resp.json()["errors"]
    assert api(carol).post(f"/api/v1/verdicts/{BIG}/undo/").status_code == 404


@pytest.mark.parametrize(
    "query",
    [
        "page_size=" + BIG,
        "page_size=-1",
        "cursor=%00",
        "cursor=" + "A" * 5000,
        "status=%00",
        "source=%00",
        "entity=%00",
        "state=%00&kind=%00",
        "bulk=%00",
        "entity=%ED%A0%80",  # a lone surrogate, UTF-8 encoded
        "source=" + "x" * 10000,
    ],
)
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/events/",
        "/api/v1/review-items/",
        "/api/v1/models/",
        "/api/v1/audit/",
        "/api/v1/action-types/",
        "/api/v1/deliveries/",
        "/api/v1/list-entries/",
        "/api/v1/appeals/",
    ],
)
def test_hostile_query_strings_are_never_500s(api, carol, path, query):
    resp = api(carol).get(f"{path}?{query}")
    assert resp.status_code in (200, 400, 404), (path, query, resp.status_code)
    if resp.status_code != 200:
        assert resp.json()["errors"]


# ------------------------------------------------------------------ bad events, one kind at a time

GOOD = {
    "external_id": "e1",
    "entity": "u",
    "occurred_at": "2026-11-30T10:00:00Z",
    "attributes": {"bytes": 1, "proto": "tcp", "admin": False, "note": ""},
}


def _with(**over):
    row = json.loads(json.dumps(GOOD))
    for key, value in over.items():
        if key.startswith("attr_"):
            row["attributes"][key[5:]] = value
        else:
            row[key] = value
    return row


BAD_EVENTS = {
    "wrong type (number as string)": (_with(attr_bytes="12"), "attributes.bytes"),
    "wrong type (entity as number)": (_with(entity=12), "entity"),
    "number beyond 64 bits": (_with(attr_bytes=2**64), "attributes.bytes"),
    "negative number beyond 64 bits": (_with(attr_bytes=-(2**64)), "attributes.bytes"),
    "NUL in a category": (_with(attr_proto="tcp\x00"), "attributes.proto"),
    "NUL in the external id": (_with(external_id="e\x00"), "external_id"),
    "timestamp without a time zone": (_with(occurred_at="2026-11-30T10:00:00"), "occurred_at"),
    "timestamp far in the future": (_with(occurred_at="2999-01-01T00:00:00Z"), "occurred_at"),
    "timestamp as a number": (_with(occurred_at=1764496800), "occurred_at"),
    "unknown attribute": (_with(attr_evil=1), "attributes.evil"),
    "missing attribute": ({**GOOD, "attributes": {"bytes": 1, "proto": "tcp", "admin": False}}, "attributes.note"),
    "missing entity": ({k: v for k, v in GOOD.items() if k != "entity"}, "entity"),
    "boolean as a string": (_with(attr_admin="yes"), "attributes.admin"),
}


@pytest.fixture
def vpn(ingest):
    source = SourceFactory(name="vpn")
    source.api_clients.add(ingest)
    return source


@pytest.mark.parametrize("kind", list(BAD_EVENTS))
def test_each_kind_of_bad_event_refuses_the_batch_naming_row_and_field(api, ingest, vpn, kind):
    row, field = BAD_EVENTS[kind]
    batch = [
        dict(GOOD, external_id="ok-0"),
        dict(row, external_id=row.get("external_id", "x") + "-1"),
        dict(GOOD, external_id="ok-2"),
    ]
    if kind == "NUL in the external id":
        batch[1]["external_id"] = "e\x00"
    resp = api(ingest).post("/api/v1/events/", {"source": "vpn", "events": batch}, format="json")
    assert resp.status_code == 400
    assert {(e.get("index"), e["field"]) for e in resp.json()["errors"]} == {(1, field)}
    assert not Event.objects.exists()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(api, ingest, vpn, literal):
    body = json.dumps({"source": "vpn", "events": [GOOD]}).replace('"bytes": 1', f'"bytes": {literal}')
    resp = api(ingest).post("/api/v1/events/", body, content_type="application/json")
    assert resp.status_code == 400
    assert resp.json()["errors"][0]["message"] == (
        f"{literal} at events[0].attributes.bytes is not a number: JSON has no NaN or Infinity"
    )
    assert not Event.objects.exists()


def test_a_lone_surrogate_in_an_attribute_is_refused(api, ingest, vpn):
    body = json.dumps({"source": "vpn", "events": [GOOD]}).replace('"note": ""', '"note": "\\udc00"')
    resp = api(ingest).post("/api/v1/events/", body, content_type="application/json")
    assert resp.status_code == 400
    assert resp.json()["errors"][0]["message"] == "invalid Unicode (a lone surrogate) at events[0].attributes.note"
    assert not Event.objects.exists()


def test_duplicate_external_ids_inside_a_batch_are_refused(api, ingest, vpn):
    resp = api(ingest).post("/api/v1/events/", {"source": "vpn", "events": [GOOD, GOOD, GOOD]}, format="json")
    assert resp.status_code == 400
    assert resp.json()["errors"] == [
        {"index": 1, "field": "external_id", "message": "repeats the external_id of row 0"},
        {"index": 2, "field": "external_id", "message": "repeats the external_id of row 0"},
    ]
    assert not Event.objects.exists()


def test_batches_over_the_size_limit_and_empty_batches_are_refused(api, ingest, vpn, settings):
    settings.SECAI_MAX_BATCH = 10
    rows = [dict(GOOD, external_id=f"e{i}") for i in range(11)]
    resp = api(ingest).post("/api/v1/events/", {"source": "vpn", "events": rows}, format="json")
    assert resp.status_code == 400 and resp.json()["errors"] == [
        {"field": "events", "message": "must hold 1 to 10 events, got 11"}
    ]
    assert api(ingest).post("/api/v1/events/", {"source": "vpn", "events": []}, format="json").status_code == 400
    assert not Event.objects.exists()


def test_bodies_over_the_byte_limit_are_a_413_on_every_write(api, world, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_000
    padding = json.dumps({"note": "x" * 5_000})
    for method, template, persona in OPERATIONS:
        path = template.format(**world["ids"])
        before = state()
        resp = getattr(api(world[persona]), method)(path, padding, content_type="application/json")
        assert resp.status_code == 413, (path, resp.status_code)
        assert resp.json() == {"errors": [{"field": "body", "message": "request body too large"}]}
        assert state() == before


def test_policy_api_refuses_action_thresholds_below_the_review_threshold(api, carol):
    from tests.factories import SourceFactory

    source = SourceFactory()
    url = f"/api/v1/sources/{source.name}/policy/"
    low = api(carol).patch(
        url,
        {"review_threshold": 0.9, "thresholds": [{"action": "step_up", "min_score": 0.5}, {"action": "deny", "min_score": 0.8}]},
        format="json",
    )
    assert low.status_code == 400, low.content
    error = low.json()["errors"][0]
    assert error["field"] == "thresholds" and "below the review threshold 0.9" in error["message"]
    # Raising the review threshold alone above the stored action thresholds is refused too.
    raised = api(carol).patch(url, {"review_threshold": 0.9}, format="json")
    assert raised.status_code == 400 and raised.json()["errors"][0]["field"] == "review_threshold"
    source.policy.refresh_from_db()
    assert source.policy.review_threshold == 0.5
