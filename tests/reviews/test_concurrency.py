"""Races on PostgreSQL, with real concurrent transactions from several threads (each thread has
its own database connection)."""

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection

from reviews import services
from reviews.models import Source, Verdict
from tests.concurrency import run_concurrently
from tests.factories import ReviewItemFactory

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("concurrency tests need PostgreSQL (make test runs them with SECAI_TEST_DB=postgres)")


def reviewers(n):
    group, _ = Group.objects.get_or_create(name="reviewers")
    out = []
    for i in range(n):
        user = User.objects.create_user(username=f"r{i}")
        user.groups.add(group)
        user.review_sources.add(*Source.objects.all())
        out.append(user)
    return out


def test_concurrent_claim_next_hands_every_reviewer_a_different_item():
    items = ReviewItemFactory.create_batch(12)
    people = reviewers(8)
    results, errors = run_concurrently([lambda u=u: services.review_item_claim_next(reviewer=u) for u in people])
    assert errors == [None] * 8
    claimed = [r.pk for r in results]
    assert len(set(claimed)) == 8 and set(claimed) <= {i.pk for i in items}


def test_concurrent_admins_are_handed_different_escalations():
    from reviews.models import ReviewItem

    escalated = ReviewItemFactory.create_batch(4, state="escalated", required_verdicts=2)
    ordinary = ReviewItemFactory.create_batch(4, priority=3.99)  # riskier, but not for admins first
    group, _ = Group.objects.get_or_create(name="admins")
    admins = []
    for i in range(6):
        user = User.objects.create_user(username=f"a{i}")
        user.groups.add(group)
        admins.append(user)
    results, errors = run_concurrently([lambda u=u: services.review_item_claim_next(reviewer=u) for u in admins])
    assert errors == [None] * 6
    claimed = [r.pk for r in results]
    assert len(set(claimed)) == 6
    assert set(claimed) >= {i.pk for i in escalated} and len(set(claimed) & {i.pk for i in ordinary}) == 2
    assert ReviewItem.objects.filter(state="escalated", claimed_by__isnull=False).count() == 4


def test_two_reviewers_deciding_one_item_only_one_wins():
    item = ReviewItemFactory()
    people = reviewers(6)
    results, errors = run_concurrently(
        [lambda u=u: services.verdict_submit(item=item, reviewer=u, verdict="approve", reason="confirmed_attack") for u in people]
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert all(isinstance(e, services.ItemConflict) for e in errors if e is not None)
    assert sum(e is not None for e in errors) == 5
    assert Verdict.objects.filter(item=item).count() == 1


def test_concurrent_promotions_leave_one_champion(trained_source_tx):
    from models_registry import services as model_services
    from models_registry.models import ModelVersion

    v1 = ModelVersion.objects.get(source=trained_source_tx)
    copies = []
    for version in (2, 3, 4):
        copy = ModelVersion.objects.create(
            source=trained_source_tx,
            version=version,
            algorithm=v1.algorithm,
            artifact_path=v1.artifact_path,
            sha256=v1.sha256,
            status="candidate",
        )
        copies.append(copy)
    results, errors = run_concurrently(
        [lambda m=m: model_services.model_promote(model=m, actor=None, reason="race") for m in copies]
    )
    assert errors == [None] * 3
    assert ModelVersion.objects.filter(source=trained_source_tx, status="champion").count() == 1
    assert ModelVersion.objects.filter(source=trained_source_tx, status="retired").count() == 3


@pytest.fixture
def trained_source_tx(request):
    return request.getfixturevalue("trained_source")


def test_concurrent_posts_of_one_batch_store_each_event_once():
    from reviews.models import Event
    from tests.factories import SourceFactory

    source = SourceFactory()
    rows = [
        {
            "external_id": f"r{i}",
            "entity": "u",
            "occurred_at": "2026-11-30T10:00:00Z",
            "attributes": {"bytes": i, "proto": "tcp", "admin": False, "note": ""},
        }
        for i in range(300)
    ]
    results, errors = run_concurrently([lambda: services.events_ingest(source=source, rows=rows) for _ in range(4)])
    assert errors == [None] * 4
    assert sum(r.accepted for r in results) == 300  # every row accepted by exactly one request
    assert all(r.accepted + r.duplicates == 300 for r in results)
    assert Event.objects.filter(source=source).count() == 300


def test_one_reviewer_racing_claim_next_and_explicit_claims_ends_with_one_claim():
    """claim-next from several tabs while an explicit claim switches items: whatever wins, the
    reviewer holds exactly one item, and every claim-next answered with an item that was theirs."""
    from reviews.models import ReviewItem

    items = ReviewItemFactory.create_batch(8)
    (alice,) = reviewers(1)
    calls = [lambda: services.review_item_claim_next(reviewer=alice) for _ in range(6)]
    calls += [lambda i=i: services.review_item_claim(item=i, reviewer=alice) for i in items[-2:]]
    results, errors = run_concurrently(calls)
    assert all(e is None or isinstance(e, services.ItemConflict) for e in errors), errors
    held = list(ReviewItem.objects.filter(state="claimed", claimed_by=alice).values_list("pk", flat=True))
    assert len(held) == 1
    assert {r.pk for r in results if r is not None} <= {i.pk for i in items}
