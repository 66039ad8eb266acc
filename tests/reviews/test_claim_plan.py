"""Claim-next's candidate query checks "not already decided by this reviewer" row by row through
the (item, reviewer) index, so its cost does not grow with the reviewer's history. Written as
NOT IN, PostgreSQL hashed every live verdict the reviewer had given (22 ms per claim at 50,000)."""

import json

import pytest
from django.db import connection, transaction

from reviews.choices import ReviewState, VerdictChoice
from reviews.models import Verdict
from reviews.selectors import review_item_next_candidates
from tests.factories import ReviewItemFactory, SourceFactory

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("query plans are PostgreSQL's (make test runs this with SECAI_TEST_DB=postgres)")


def _nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def test_claim_next_does_not_read_the_reviewers_whole_history(alice):
    source = SourceFactory(reviewers=[alice])
    decided = [ReviewItemFactory(event__source=source, state=ReviewState.DECIDED) for _ in range(30)]
    Verdict.objects.bulk_create(
        Verdict(item=item, reviewer=alice, verdict=VerdictChoice.APPROVE, reason="confirmed") for item in decided
    )
    waiting = ReviewItemFactory(event__source=source, score=0.99)
    mine = ReviewItemFactory(event__source=source, score=0.999)  # first in the queue, but alice decided it
    Verdict.objects.create(item=mine, reviewer=alice, verdict=VerdictChoice.APPROVE, reason="confirmed")

    with transaction.atomic():
        candidates = review_item_next_candidates(reviewer=alice)
        assert list(candidates) == [waiting]
        sql, params = candidates.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            plan = cursor.fetchone()[0]
    plan = plan if isinstance(plan, list) else json.loads(plan)
    nodes = list(_nodes(plan[0]["Plan"]))
    verdict_reads = [n for n in nodes if n.get("Relation Name") == Verdict._meta.db_table]
    assert verdict_reads, "the plan reads no verdicts: this test would prove nothing"
    # A subplan over the verdicts (hashed or not) is the uncorrelated NOT IN; the correlated
    # form is an anti join that looks up one item at a time.
    assert all(n.get("Parent Relationship") != "SubPlan" for n in verdict_reads), plan
