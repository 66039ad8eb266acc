"""The review-item API: queue, claim-next, decision, and who may use them."""

import pytest

from reviews.models import Verdict
from tests.factories import ReviewItemFactory

pytestmark = pytest.mark.django_db


def test_claim_next_then_decide(api, alice):
    item = ReviewItemFactory(priority=3.5)
    ReviewItemFactory(priority=2.1)
    got = api(alice).post("/api/v1/review-items/claim-next/")
    assert got.status_code == 200 and got.json()["id"] == item.pk and got.json()["claimed_by"] == "alice"
    resp = api(alice).post(
        f"/api/v1/review-items/{item.pk}/decision/",
        {"verdict": "overturn", "reason": "known_benign", "note": "vpn"},
        format="json",
    )
    assert resp.status_code == 200, resp.content
    assert resp.json()["verdict"] == "overturn" and resp.json()["reviewer"] == "alice"


def test_empty_queue_is_204(api, alice):
    assert api(alice).post("/api/v1/review-items/claim-next/").status_code == 204


def test_conflicts_are_409(api, alice, bob):
    item = ReviewItemFactory()
    assert api(alice).post(f"/api/v1/review-items/{item.pk}/claim/").status_code == 200
    body = {"verdict": "approve", "reason": "confirmed_attack"}
    blocked = api(bob).post(f"/api/v1/review-items/{item.pk}/decision/", body, format="json")
    assert blocked.status_code == 409 and "claimed by alice" in blocked.json()["errors"][0]["message"]
    assert api(alice).post(f"/api/v1/review-items/{item.pk}/decision/", body, format="json").status_code == 200
    again = api(alice).post(f"/api/v1/review-items/{item.pk}/decision/", body, format="json")
    assert again.status_code == 409 and "already been decided" in again.json()["errors"][0]["message"]
    assert Verdict.objects.count() == 1


def test_bad_decision_body_is_400(api, alice):
    item = ReviewItemFactory()
    resp = api(alice).post(f"/api/v1/review-items/{item.pk}/decision/", {"verdict": "yes", "reason": "x"}, format="json")
    assert resp.status_code == 400
    assert {e["field"] for e in resp.json()["errors"]} == {"verdict", "reason"}
    assert (
        api(alice)
        .post("/api/v1/review-items/999999/decision/", {"verdict": "approve", "reason": "other"}, format="json")
        .status_code
        == 404
    )


def test_queue_listing_is_ordered_and_filtered(api, alice):
    a = ReviewItemFactory(priority=2.2)
    b = ReviewItemFactory(priority=3.3)
    ReviewItemFactory(priority=3.9, state="decided")
    data = api(alice).get("/api/v1/review-items/", {"state": "open"}).json()
    assert [r["id"] for r in data["results"]] == [b.pk, a.pk]
    assert api(alice).get("/api/v1/review-items/", {"source": "nope"}).json()["results"] == []


@pytest.mark.parametrize("persona, expected", [("alice", 200), ("carol", 200), ("mallory", 403), ("ingest", 403), (None, 401)])
def test_who_may_use_the_queue(api, request, persona, expected):
    user = request.getfixturevalue(persona) if persona else None
    item = ReviewItemFactory()
    assert api(user).get("/api/v1/review-items/").status_code == expected
    claim = api(user).post("/api/v1/review-items/claim-next/")
    assert claim.status_code == (200 if expected == 200 else expected)
    decide = api(user).post(f"/api/v1/review-items/{item.pk}/decision/", {"verdict": "approve", "reason": "other"}, format="json")
    assert decide.status_code == expected
    assert Verdict.objects.count() == (1 if expected == 200 else 0)


def test_claim_release_and_detail_work_in_any_state(api, alice):
    item = ReviewItemFactory()
    assert api(alice).post(f"/api/v1/review-items/{item.pk}/claim/").json()["state"] == "claimed"
    assert api(alice).get(f"/api/v1/review-items/{item.pk}/").json()["claimed_by"] == "alice"
    released = api(alice).post(f"/api/v1/review-items/{item.pk}/release/")
    assert released.status_code == 200 and released.json()["state"] == "open"


def test_an_item_says_whether_it_is_an_audit_sample_and_how_many_verdicts_it_needs(api, alice):
    # An API reviewer needs both to answer correctly: approving an audit sample means "a threat the
    # model missed", and an item needing two verdicts is not decided by the first.
    audit = ReviewItemFactory(kind="audit_sample", proposed_action="allow", priority=3.9)
    four_eyes = ReviewItemFactory(required_verdicts=2, priority=3.1)
    got = {i["id"]: i for i in api(alice).get("/api/v1/review-items/").json()["results"]}
    assert (got[audit.pk]["kind"], got[audit.pk]["required_verdicts"]) == ("audit_sample", 1)
    assert (got[four_eyes.pk]["kind"], got[four_eyes.pk]["required_verdicts"]) == ("flagged", 2)


def test_queue_api_applies_the_console_filters(api, alice):
    low = ReviewItemFactory(priority=2.2, score=0.2, proposed_action="step_up", event__entity="tcp:http")
    high = ReviewItemFactory(priority=3.9, score=0.9, proposed_action="deny", event__entity="udp:dns")

    def ids(**params):
        resp = api(alice).get("/api/v1/review-items/", params)
        assert resp.status_code == 200, resp.content
        return [r["id"] for r in resp.json()["results"]]

    assert ids() == [high.pk, low.pk]
    assert ids(action="step_up") == [low.pk]
    assert ids(min_score=0.5) == [high.pk]
    assert ids(max_score=0.5) == [low.pk]
    assert ids(entity="udp:dns") == [high.pk]
    assert ids(q="tcp:") == [low.pk]
    assert ids(max_age_hours=1) == [high.pk, low.pk]


@pytest.mark.parametrize(
    "param, value",
    [
        ("max_age_hours", "100000000"),
        ("max_age_hours", "99999999999999999999"),
        ("min_score", "abc"),
        ("min_score", "-1"),
        ("min_score", "1.5"),
        ("max_score", "-1"),
        ("max_score", "2"),
        ("max_score", "nan"),
        ("model_version", "99999999999999999999"),
        ("action", "no_such_action"),
        ("kind", "whatever"),
    ],
)
def test_queue_api_names_a_bad_filter(api, alice, param, value):
    resp = api(alice).get("/api/v1/review-items/", {param: value})
    assert resp.status_code == 400 and param in str(resp.json()), resp.content


@pytest.mark.parametrize("value", ["100000000", "99999999999999999999", "1e400", "-5", "nan"])
def test_queue_page_ignores_an_age_it_cannot_hold(client, alice, value):
    item = ReviewItemFactory()
    client.force_login(alice)
    page = client.get("/", {"max_age_hours": value, "model_version": "99999999999999999999"})
    assert page.status_code == 200
    assert f"/items/{item.pk}/" in page.content.decode()


@pytest.mark.parametrize("param", ["min_score", "max_score"])
@pytest.mark.parametrize("value", ["-1", "1.5", "abc"])
def test_queue_page_ignores_a_score_bound_outside_0_to_1(client, alice, param, value):
    item = ReviewItemFactory(score=0.7)
    client.force_login(alice)
    page = client.get("/", {param: value})
    assert page.status_code == 200
    assert getattr(page.context["filters"], param) is None  # ignored like an unset filter
    assert f"/items/{item.pk}/" in page.content.decode()
    assert f'name="{param}" size="4" inputmode="decimal" placeholder' in page.content.decode()
    assert f'value="{value}"' not in page.content.decode()


def test_queue_page_says_which_filters_it_did_not_apply(client, alice):
    ReviewItemFactory()
    client.force_login(alice)
    page = client.get("/", {"min_score": "abc", "max_age_hours": "1e308", "entity": "x"}).content.decode()
    assert "Not applied:" in page
    assert "min_score must be a number from 0 to 1" in page and "max_age_hours must be a number within" in page
    # The htmx partial that filter changes swap in says it too; a valid filter alone says nothing.
    partial = client.get("/", {"min_score": "2"}, HTTP_HX_REQUEST="true").content.decode()
    assert "min_score must be a number from 0 to 1" in partial
    assert "Not applied:" not in client.get("/", {"min_score": "0.5"}).content.decode()
