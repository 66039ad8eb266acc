"""Explanations are computed after scoring, off the scoring path: by the explain queue once the
batch commits, or by the item page (and the event API) when a reviewer gets there first."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models_registry.scoring import explain_events
from reviews.models import Event, Policy, ReviewItem
from reviews.services import events_ingest, events_score
from tests.conftest import NSL_LIVE, nsl_events


def _scored_without_explanations(source, n=300):
    """Events scored as the worker does, with the after-commit explain message never sent."""
    rows = [r for r, _ in nsl_events(NSL_LIVE, n, prefix="live")]
    events_ingest(source=source, rows=rows)  # in the test's transaction: no on_commit runs
    ids = list(Event.objects.filter(source=source, external_id__startswith="live-").values_list("id", flat=True))
    assert events_score(event_ids=ids) == n
    return ids


@pytest.mark.django_db
def test_scoring_leaves_explanations_to_the_explain_step(trained_source):
    ids = _scored_without_explanations(trained_source)
    queued = Event.objects.filter(id__in=ids, review_item__isnull=False)
    assert queued.exists()
    assert not Event.objects.filter(id__in=ids, explanation__isnull=False).exists()

    assert explain_events(ids) == Event.objects.filter(id__in=ids).count()  # every scored event asked for
    for event in queued:
        assert event.explanation and all(part["attribute"] in event.attributes for part in event.explanation)
    assert explain_events(ids) == 0  # idempotent: nothing is explained twice


@pytest.mark.django_db
def test_item_page_explains_an_event_the_queue_has_not_reached(trained_source, client, alice):
    ids = _scored_without_explanations(trained_source)
    item = ReviewItem.objects.filter(event_id__in=ids).order_by("-score").first()
    assert item.event.explanation is None
    client.force_login(alice)
    page = client.get(f"/items/{item.pk}/")
    assert page.status_code == 200
    item.event.refresh_from_db()
    assert item.event.explanation
    top = item.event.explanation[0]["attribute"]
    assert 'id="explanation"' in page.content.decode() and top in page.content.decode()


@pytest.mark.django_db
def test_event_api_explains_on_demand(trained_source, api, ingest):
    trained_source.api_clients.add(ingest)
    ids = _scored_without_explanations(trained_source)
    event = Event.objects.filter(id__in=ids, review_item__isnull=False).first()
    body = api(ingest).get(f"/api/v1/events/{event.id}/").json()
    assert body["explanation"] and {"attribute", "contribution", "typical"} <= set(body["explanation"][0])


@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=50))
def test_vectorised_actions_match_the_rule_one_score_at_a_time(scores):
    policy = Policy(
        thresholds=[
            {"min_score": 0.5, "action": "step_up"},
            {"min_score": 0.9, "action": "deny"},
            {"min_score": 0.9, "action": "block"},  # a tie: the later rule wins, as in action_for
            {"min_score": 0.2, "action": "watch"},
        ]
    )
    assert policy.actions_for(np.asarray(scores)) == [policy.action_for(s) for s in scores]
