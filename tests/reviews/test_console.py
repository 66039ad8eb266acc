"""Console pages through Django's test client: who may see what, deciding, bounded queries."""

from datetime import timedelta

import pytest
from django.urls import reverse

from reviews.models import Label, Verdict
from tests.conftest import PASSWORD
from tests.factories import EventFactory, ReviewItemFactory

pytestmark = pytest.mark.django_db


def login(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.mark.parametrize("url_name", ["reviews:queue", "registry:models"])
def test_anonymous_is_sent_to_login(client, url_name):
    resp = client.get(reverse(url_name))
    assert resp.status_code == 302 and resp["Location"].startswith("/login/")


def test_roles_on_console_pages(client, alice, carol, mallory, ingest):
    item = ReviewItemFactory()
    pages = [reverse("reviews:queue"), reverse("reviews:item", args=[item.pk])]
    admin_pages = [reverse("registry:models"), reverse("reviews:policy", args=[item.source.name])]
    for user, queue_ok, admin_ok in ((alice, True, False), (carol, True, True), (mallory, False, False), (ingest, False, False)):
        client.logout()
        login(client, user)
        for url in pages:
            assert client.get(url).status_code == (200 if queue_ok else 403), (user, url)
        for url in admin_pages:
            assert client.get(url).status_code == (200 if admin_ok else 403), (user, url)
    client.logout()
    login(client, mallory)
    resp = client.post(reverse("reviews:decide", args=[item.pk]), {"verdict": "approve", "reason": "other"})
    assert resp.status_code == 403 and not Verdict.objects.exists()


def test_queue_lists_highest_risk_first_with_bounded_queries(client, alice, django_assert_max_num_queries):
    for p in (2.1, 3.8, 2.9):
        ReviewItemFactory(priority=p, score=p - 2)
    ReviewItemFactory.create_batch(30)
    login(client, alice)
    with django_assert_max_num_queries(10):
        resp = client.get(reverse("reviews:queue"))
    rows = resp.context["rows"]
    assert len(rows) == 33 and rows[0].priority == 3.8 and rows[-1].priority == 2.1
    assert list(rows) == sorted(rows, key=lambda i: -i.priority)


def test_claim_next_decide_and_move_on(client, alice):
    first = ReviewItemFactory(priority=3.9)
    second = ReviewItemFactory(priority=2.5)
    login(client, alice)
    resp = client.post(reverse("reviews:next"))
    assert resp.status_code == 302 and resp["Location"] == reverse("reviews:item", args=[first.pk])
    page = client.get(resp["Location"])
    assert b"decision-form" in page.content
    resp = client.post(
        reverse("reviews:decide", args=[first.pk]),
        {"verdict": "approve", "reason": "confirmed_attack", "then": "next"},
        follow=True,
    )
    assert resp.redirect_chain[-1][0] == reverse("reviews:item", args=[second.pk])
    assert "Approved: item" in resp.content.decode()
    assert Verdict.objects.get().item_id == first.pk


def test_second_reviewer_gets_a_clear_message(client, alice, bob):
    item = ReviewItemFactory()
    login(client, alice)
    client.post(reverse("reviews:claim", args=[item.pk]))
    client.logout()
    login(client, bob)
    page = client.get(reverse("reviews:item", args=[item.pk]))
    assert b"decision-form" not in page.content and b"Claimed by <strong>alice</strong>" in page.content
    resp = client.post(reverse("reviews:decide", args=[item.pk]), {"verdict": "overturn", "reason": "known_benign"}, follow=True)
    text = resp.content.decode()
    assert "Your decision was not recorded" in text and "claimed by alice" in text
    assert not Verdict.objects.exists()


def test_attacker_controlled_values_are_escaped(client, alice):
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    event = EventFactory(entity=evil, external_id=evil[:50], attributes={"bytes": 1, "proto": evil, "admin": False, "note": evil})
    item = ReviewItemFactory(event=event)
    login(client, alice)
    for url in (reverse("reviews:queue"), reverse("reviews:item", args=[item.pk])):
        html = client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_admin_sets_thresholds_in_the_console(client, carol, alice):
    item = ReviewItemFactory()
    url = reverse("reviews:policy", args=[item.source.name])
    login(client, carol)
    resp = client.post(
        url, {"review_threshold": "0.4", "step_up": "0.4", "deny": "0.7", "block": "", "four_eyes_actions": ["deny"]}, follow=True
    )
    assert "saved" in resp.content.decode()
    item.source.policy.refresh_from_db()
    assert item.source.policy.four_eyes_actions == ["deny"]
    assert item.source.policy.thresholds == [{"action": "step_up", "min_score": 0.4}, {"action": "deny", "min_score": 0.7}]
    bad = client.post(url, {"review_threshold": "0.4", "step_up": "0.8", "deny": "0.7"})
    assert bad.status_code == 200 and "more severe action" in bad.content.decode()


def test_item_page_makes_a_bounded_number_of_queries(client, alice, bob, django_assert_max_num_queries):
    from reviews import services
    from tests.factories import SourceFactory

    src = SourceFactory()
    for i in range(15):  # history and similar-event candidates with verdicts
        past = ReviewItemFactory(event=EventFactory(source=src, entity="10.9.9.9", external_id=f"p{i}"))
        services.verdict_submit(item=past, reviewer=bob, verdict="overturn", reason="known_benign")
    item = ReviewItemFactory(event=EventFactory(source=src, entity="10.9.9.9"))
    login(client, alice)
    with django_assert_max_num_queries(20):
        resp = client.get(reverse("reviews:item", args=[item.pk]))
    assert resp.status_code == 200 and len(resp.context["history"]) == 15 and len(resp.context["similar"]) == 5


def test_reason_codes_are_editable_in_the_django_admin_but_not_deletable(client, carol, alice):
    login(client, alice)
    assert client.get("/admin/reviews/reasoncode/").status_code == 302  # to the admin login: reviewers have no admin
    client.logout()
    login(client, carol)
    assert client.get("/admin/reviews/reasoncode/").status_code == 200
    assert client.get("/admin/reviews/reasoncode/1/delete/").status_code == 403
    assert client.get("/admin/reviews/auditentry/add/").status_code == 403


def test_the_verdict_just_given_can_be_undone_from_the_next_pages(client, alice, bob, settings):
    decided, following = ReviewItemFactory(priority=3.9), ReviewItemFactory(priority=3.1)
    login(client, alice)
    resp = client.post(
        reverse("reviews:decide", args=[decided.pk]), {"verdict": "overturn", "reason": "known_benign", "then": "next"}
    )
    assert resp["Location"] == reverse("reviews:item", args=[following.pk])
    verdict = Verdict.objects.get(item=decided)
    undo_url = reverse("reviews:undo", args=[verdict.pk])
    offer = f"Undo my verdict on item #{decided.pk}"
    for page in (reverse("reviews:item", args=[following.pk]), reverse("reviews:queue")):
        html = client.get(page).content.decode()
        assert offer in html and f'action="{undo_url}" id="undo-form"' in html, page
    client.logout()
    login(client, bob)
    assert offer not in client.get(reverse("reviews:queue")).content.decode()
    client.logout()
    login(client, alice)
    Verdict.objects.filter(pk=verdict.pk).update(
        created_at=verdict.created_at - timedelta(seconds=settings.SECAI_UNDO_SECONDS + 1)
    )
    assert offer not in client.get(reverse("reviews:item", args=[following.pk])).content.decode()


def test_an_audit_sample_asks_threat_or_not_rather_than_approve_the_allow(client, alice):
    # The proposed action of an audit sample is "allow"; "approve: the proposed action is right"
    # would read as "benign" while it records a threat.
    item = ReviewItemFactory(kind="audit_sample", proposed_action="allow", event=EventFactory(proposed_action="allow", score=0.1))
    login(client, alice)
    html = client.get(reverse("reviews:item", args=[item.pk])).content.decode()
    assert '<input type="radio" name="verdict" value="approve" required> <strong>Threat</strong>: the model missed it' in html
    assert '<input type="radio" name="verdict" value="overturn"> <strong>Not a threat</strong>' in html
    assert "the proposed action is right" not in html
    done = client.post(
        reverse("reviews:decide", args=[item.pk]), {"verdict": "approve", "reason": "confirmed_attack"}, follow=True
    )
    assert f"Threat: item {item.pk}" in done.content.decode()
    label = Label.objects.get(event=item.event)
    assert label.is_threat is True and label.origin == "audit_sample"


def test_policy_page_refuses_an_action_threshold_below_the_review_threshold(client, carol):
    item = ReviewItemFactory()
    policy = item.source.policy
    before = (policy.review_threshold, policy.thresholds)
    url = reverse("reviews:policy", args=[item.source.name])
    login(client, carol)
    resp = client.post(url, {"review_threshold": "0.9", "step_up": "0.5", "deny": "0.8", "block": ""})
    assert resp.status_code == 200
    errors = resp.context["form"].errors
    assert set(errors) == {"step_up", "deny"} and "below the review threshold 0.9" in errors["step_up"][0]
    policy.refresh_from_db()
    assert (policy.review_threshold, policy.thresholds) == before
    ok = client.post(url, {"review_threshold": "0.5", "step_up": "0.5", "deny": "0.8", "block": ""})
    assert ok.status_code == 302
