"""The audit trail can be read by administrators (page and API), filtered and paged, and changed by
no one: no page, endpoint or admin screen edits or deletes an entry."""

from datetime import UTC, datetime
from unittest import mock
from urllib.parse import parse_qsl

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from reviews.audit import audit_record
from reviews.models import AuditEntry
from tests.conftest import PASSWORD
from tests.factories import ReviewItemFactory, SourceFactory

pytestmark = pytest.mark.django_db

AUDIT_API = "/api/v1/audit/"


def login(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


def entry_at(when: datetime, **kw) -> AuditEntry:
    """An audit entry written at a given time (created_at is set by the database layer on insert)."""
    with mock.patch("django.utils.timezone.now", return_value=when):
        return audit_record(**kw)


@pytest.fixture
def trail(alice, bob, carol):
    item = ReviewItemFactory()
    source = SourceFactory(name="vpn")
    entries = [
        entry_at(datetime(2026, 11, 1, 9, tzinfo=UTC), actor=alice, verb="item.claim", obj=item, after={"claim": 1}),
        entry_at(
            datetime(2026, 11, 1, 9, 5, tzinfo=UTC),
            actor=alice,
            verb="item.decide",
            obj=item,
            before={"state": "claimed"},
            after={"state": "decided", "note": "<script>alert('x')</script>"},
        ),
        entry_at(datetime(2026, 11, 2, 10, tzinfo=UTC), actor=bob, verb="item.claim", obj=item),
        entry_at(
            datetime(2026, 11, 3, 11, tzinfo=UTC),
            actor=carol,
            verb="policy.update",
            obj=source.policy,
            before={"review_threshold": 0.5},
            after={"review_threshold": 0.6},
        ),
        entry_at(
            datetime(2026, 11, 4, 12, tzinfo=UTC), actor=None, actor_label="system:retrain", verb="model.promote", obj=source
        ),
    ]
    return item, source, entries


# ------------------------------------------------------------------------------------------ page


def test_only_admins_read_the_audit_page(client, alice, carol, mallory, ingest, trail):
    url = reverse("reviews:audit")
    resp = client.get(url)
    assert resp.status_code == 302 and resp["Location"].startswith("/login/")
    for user, expected in ((carol, 200), (alice, 403), (mallory, 403), (ingest, 403)):
        client.logout()
        login(client, user)
        resp = client.get(url)
        assert resp.status_code == expected, user
        if expected == 403:
            assert b"item.decide" not in resp.content and b"review_threshold" not in resp.content


def test_audit_page_lists_newest_first_with_escaped_pretty_json(client, carol, trail):
    item, _, entries = trail
    login(client, carol)
    resp = client.get(reverse("reviews:audit"))
    html = resp.content.decode()
    assert [row["entry"].pk for row in resp.context["rows"]] == [e.pk for e in reversed(entries)]
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    # Pretty JSON: keys sorted, one per line, indented.
    assert "{\n  &quot;note&quot;: &quot;&lt;script&gt;" in html and "\n  &quot;state&quot;: &quot;decided&quot;\n}" in html
    assert f'href="{reverse("reviews:item", args=[item.pk])}"' in html
    assert "system:retrain" in html


def test_audit_page_offers_no_way_to_change_an_entry(client, carol, trail):
    login(client, carol)
    url = reverse("reviews:audit")
    html = client.get(url).content.decode()
    main = html[html.index("<main>") :]
    assert 'method="post"' not in main.lower() and "<textarea" not in main
    for method in ("post", "put", "patch", "delete"):
        assert getattr(client, method)(url).status_code == 405, method
    assert AuditEntry.objects.count() == len(trail[2])


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"actor": "alice"}, [1, 0]),
        ({"verb": "item.claim"}, [2, 0]),
        ({"actor": "alice", "verb": "item.claim"}, [0]),
        ({"object_type": "reviews.policy"}, [3]),
        ({"actor": "system:retrain"}, [4]),
        ({"since": "2026-11-02", "until": "2026-11-03"}, [3, 2]),  # "to" includes the whole day
        ({"since": "2026-11-04"}, [4]),
        ({"until": "2026-11-01"}, [1, 0]),
        ({"actor": "nobody"}, []),
    ],
)
def test_audit_page_filters(client, carol, trail, query, expected):
    _, _, entries = trail
    login(client, carol)
    resp = client.get(reverse("reviews:audit"), query)
    assert [row["entry"].pk for row in resp.context["rows"]] == [entries[i].pk for i in expected]


def test_audit_page_filters_by_object(client, carol, trail):
    item, _, entries = trail
    login(client, carol)
    resp = client.get(reverse("reviews:audit"), {"object_type": "reviews.reviewitem", "object_id": str(item.pk)})
    assert [row["entry"].pk for row in resp.context["rows"]] == [entries[2].pk, entries[1].pk, entries[0].pk]


def test_bad_dates_are_reported_not_a_crash(client, carol, trail):
    login(client, carol)
    resp = client.get(reverse("reviews:audit"), {"since": "yesterday"})
    assert resp.status_code == 200 and resp.context["rows"] == []
    assert "Enter a valid date." in resp.content.decode()


def test_audit_page_keyset_pages_cover_every_entry_once(client, carol, django_assert_max_num_queries):
    source = SourceFactory()
    for i in range(120):
        audit_record(actor=carol, verb="policy.update", obj=source.policy, after={"i": i})
    audit_record(actor=carol, verb="source.create", obj=source)
    login(client, carol)
    seen, query, pages = [], {"verb": "policy.update"}, 0
    while True:
        with django_assert_max_num_queries(8):
            resp = client.get(reverse("reviews:audit"), query)
        rows = resp.context["rows"]
        assert len(rows) <= 50
        seen += [row["entry"].pk for row in rows]
        pages += 1
        if not resp.context["older"]:
            break
        query = dict(parse_qsl(resp.context["older"]))
    ids = list(AuditEntry.objects.filter(verb="policy.update").order_by("-id").values_list("id", flat=True))
    assert pages == 3 and seen == ids
    # And back: the newer link of the last page leads to the entries just before it.
    newer = dict(parse_qsl(resp.context["newer"]))
    back = client.get(reverse("reviews:audit"), newer).context["rows"]
    assert [row["entry"].pk for row in back] == ids[50:100]


# ------------------------------------------------------------------------------------------ API


def test_only_admins_read_the_audit_api(api, alice, carol, mallory, ingest, trail):
    assert api(None).get(AUDIT_API).status_code == 401
    for user in (alice, mallory, ingest):
        resp = api(user).get(AUDIT_API)
        assert resp.status_code == 403 and "results" not in resp.json(), user
    resp = api(carol).get(AUDIT_API)
    assert resp.status_code == 200
    body = resp.json()
    assert [r["id"] for r in body["results"]] == [e.pk for e in reversed(trail[2])]
    first = body["results"][-1]
    assert first["actor"] == "alice" and first["verb"] == "item.claim" and first["after"] == {"claim": 1}
    detail = api(carol).get(f"{AUDIT_API}{trail[2][1].pk}/").json()
    assert detail["after"]["note"] == "<script>alert('x')</script>"  # JSON, not HTML: stored as given


def test_audit_api_refuses_every_write(api, alice, carol, trail):
    entry = trail[2][0]
    for user, expected in ((carol, 405), (alice, 403), (None, 401)):
        client = api(user)
        for method in ("post", "put", "patch", "delete"):
            for url in (AUDIT_API, f"{AUDIT_API}{entry.pk}/"):
                resp = getattr(client, method)(url, {"verb": "forged"}, format="json")
                assert resp.status_code == expected, (user, method, url)
    assert AuditEntry.objects.count() == len(trail[2])
    assert AuditEntry.objects.get(pk=entry.pk).verb == "item.claim"


def test_audit_api_filters_and_cursor_pages(api, carol, trail):
    item, _, entries = trail
    client = api(carol)

    def ids(params):
        return [r["id"] for r in client.get(AUDIT_API, params).json()["results"]]

    assert ids({"actor": "alice"}) == [entries[1].pk, entries[0].pk]
    assert ids({"verb": "policy.update"}) == [entries[3].pk]
    assert ids({"object_type": "reviews.reviewitem", "object_id": str(item.pk)}) == [e.pk for e in entries[2::-1]]
    assert ids({"since": "2026-11-02T00:00:00Z", "until": "2026-11-04T00:00:00Z"}) == [entries[3].pk, entries[2].pk]
    bad = client.get(AUDIT_API, {"since": "not a time"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "since"
    page = client.get(AUDIT_API, {"page_size": 2}).json()
    seen = [r["id"] for r in page["results"]]
    while page["next"]:
        page = client.get(page["next"]).json()
        seen += [r["id"] for r in page["results"]]
    assert seen == [e.pk for e in reversed(entries)]


def test_audit_api_is_in_the_openapi_schema(client):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    assert set(schema["paths"]["/api/v1/audit/"]) == {"get"}
    assert set(schema["paths"]["/api/v1/audit/{id}/"]) == {"get"}


# ------------------------------------------------------------------------------------------ Django admin


def test_django_admin_shows_audit_entries_read_only(client, trail):
    root = User.objects.create_superuser("root", "root@example.com", PASSWORD)
    login(client, root)
    entry = trail[2][1]
    base = "/admin/reviews/auditentry/"
    changelist = client.get(base)
    assert changelist.status_code == 200 and "item.decide" in changelist.content.decode()
    assert "delete_selected" not in changelist.content.decode()
    assert client.get(f"{base}add/").status_code == 403
    assert client.post(f"{base}add/", {"verb": "forged"}).status_code == 403
    view = client.get(f"{base}{entry.pk}/change/")
    assert view.status_code == 200 and 'name="_save"' not in view.content.decode()
    assert client.post(f"{base}{entry.pk}/change/", {"verb": "forged"}).status_code == 403
    assert client.get(f"{base}{entry.pk}/delete/").status_code == 403
    assert client.post(f"{base}{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.post(base, {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"}).status_code in (
        200,
        302,
    )
    assert AuditEntry.objects.filter(pk=entry.pk, verb="item.decide").exists()
    assert AuditEntry.objects.count() == len(trail[2])
