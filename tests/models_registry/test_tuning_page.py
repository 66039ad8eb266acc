"""The threshold tuning page and API on real NSL-KDD events scored by a real champion, with labels
as reviewers would leave them: every flagged event decided, a random tenth of the rest audited."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from reviews.choices import LabelOrigin
from reviews.models import AuditEntry, Event, Label
from reviews.services import events_ingest, events_score
from tests.conftest import NSL_LIVE, nsl_events
from tests.models_registry.helpers import fake_model, login, toy_source

pytestmark = pytest.mark.django_db

QUERY = {"days": 30, "goal": "cost", "cost_missed": 50, "cost_review": 1, "cost_deny": 20}


@pytest.fixture
def live(trained_source):
    rows = nsl_events(NSL_LIVE, 1500, prefix="live", start=datetime.now(UTC) - timedelta(days=2))
    ids = [e["id"] for e in events_ingest(source=trained_source, rows=[r for r, _ in rows]).events]
    assert events_score(event_ids=ids) == 1500
    truth = {r["external_id"]: y for r, y in rows}
    rng = np.random.default_rng(0)
    labels = []
    for event in Event.objects.filter(id__in=ids):
        if event.status == "queued":
            labels.append(Label(event=event, is_threat=truth[event.external_id], origin=LabelOrigin.VERDICT))
        elif rng.random() < 0.1:
            labels.append(Label(event=event, is_threat=truth[event.external_id], origin=LabelOrigin.AUDIT_SAMPLE))
    Label.objects.bulk_create(labels)
    trained_source.truly_missed = sum(
        1 for e in Event.objects.filter(id__in=ids, score__lt=0.5).only("external_id") if truth[e.external_id]
    )
    return trained_source


def test_admin_tunes_previews_and_applies_thresholds(client, api, carol, live):
    login(client, carol)
    resp = client.get("/models/sources/nsl-kdd/tuning/", QUERY)
    assert resp.status_code == 200
    assert "error" not in resp.context, resp.context.get("error")
    result = resp.context["result"]
    rec = result["recommended"]
    # The recommendation minimises the expected cost it is asked to: it is no worse than the current policy.
    assert result["proposed"]["expected_cost_per_day"] <= result["current"]["expected_cost_per_day"]
    assert rec["thresholds"]["deny"] >= rec["review_threshold"]
    # No cost was given for step-up: it keeps the policy's threshold (raised to the review threshold if need be).
    assert rec["thresholds"]["step_up"] == max(0.5, rec["review_threshold"])
    data = resp.context["data"]
    assert data.events_total == 1500 and data.labels_in_sample_excluded == 0 and data.rescored == 0
    # The estimate of the threats the current policy missed, learnt from a 10% audit sample, is
    # near the truth about all of these events.
    assert data.days == 1.0  # the events were all scored just now: per-day figures are over one day
    assert any("over 1.0 of the 30 days" in n for n in result["notes"])
    estimated = result["current"]["expected_missed_per_day"] * data.days
    assert live.truly_missed > 50 and 0.6 * live.truly_missed < estimated < 1.5 * live.truly_missed
    html = resp.content.decode()
    assert html.count("data:image/png;base64,") == 3 and "Apply the recommendation" in html

    custom = client.get("/models/sources/nsl-kdd/tuning/", {**QUERY, "review_threshold": 0.6, "deny": 0.95})
    assert custom.context["result"]["custom"]["review_threshold"] == 0.6 and b"Apply your thresholds" in custom.content

    applied = client.post("/models/sources/nsl-kdd/tuning/", {**QUERY, "review_threshold": 0.6, "step_up": 0.7, "deny": 0.95})
    assert applied.status_code == 302
    live.policy.refresh_from_db()
    assert live.policy.review_threshold == 0.6
    assert live.policy.thresholds == [{"action": "step_up", "min_score": 0.7}, {"action": "deny", "min_score": 0.95}]
    assert AuditEntry.objects.get(verb="policy.update").after["review_threshold"] == 0.6
    tune = AuditEntry.objects.get(verb="policy.tune")
    assert tune.actor == carol and tune.after["basis"]["cost_missed"] == 50 and tune.after["basis"]["days"] == 30

    bad = client.post("/models/sources/nsl-kdd/tuning/", {**QUERY, "review_threshold": 0.6, "step_up": 0.9, "deny": 0.8})
    assert bad.status_code == 302
    live.policy.refresh_from_db()
    assert live.policy.thresholds[-1]["min_score"] == 0.95  # a less severe action above a more severe one is refused

    by_api = api(carol).get("/api/v1/sources/nsl-kdd/tuning/", {"goal": "targets", "target_recall": 0.9, "target_deny": 0.95})
    assert by_api.status_code == 200, by_api.content
    body = by_api.json()
    assert body["events"] == 1500 and body["labels_used"] > 100
    assert 0 <= body["recommended"]["review_threshold"] <= 1 and "expected_missed_per_day" in body["proposed"]
    assert api(carol).get("/api/v1/sources/nsl-kdd/tuning/", {"goal": "cost"}).status_code == 400


def test_tuning_explains_when_there_is_nothing_to_learn_from(client, carol):
    source = toy_source()
    login(client, carol)
    resp = client.get("/models/sources/toy/tuning/", QUERY)
    assert resp.status_code == 200 and "toy has no champion model" in resp.context["error"]
    fake_model(source, status="champion")
    resp = client.get("/models/sources/toy/tuning/", QUERY)
    assert "no events of toy were scored in the last 30 days" in resp.context["error"]
    assert client.get("/models/sources/toy/tuning/").status_code == 200  # the empty form


@pytest.mark.parametrize("persona", ["alice", "mallory", "ingest", None])
def test_tuning_is_admin_only(client, api, request, persona, nsl_source):
    user = request.getfixturevalue(persona) if persona else None
    if user is not None:
        login(client, user)
    expected = 403 if user else 302
    assert client.get("/models/sources/nsl-kdd/tuning/", QUERY).status_code == expected
    assert client.post("/models/sources/nsl-kdd/tuning/", {**QUERY, "review_threshold": 0.1}).status_code == expected
    assert api(user).get("/api/v1/sources/nsl-kdd/tuning/", QUERY).status_code == (403 if user else 401)
    nsl_source.policy.refresh_from_db()
    assert nsl_source.policy.review_threshold == 0.5


def _audit_labels_removed(source):
    Label.objects.filter(event__source=source, origin=LabelOrigin.AUDIT_SAMPLE).delete()


def test_no_recommendation_without_decided_audit_samples(client, carol, live):
    """Verdicts only cover scores at or above the review threshold: nothing below it is measured, so
    no threshold is recommended (nor offered to apply) and the page says what is missing."""
    from reviews.choices import ItemKind
    from reviews.models import ReviewItem

    _audit_labels_removed(live)
    login(client, carol)
    resp = client.get("/models/sources/nsl-kdd/tuning/", QUERY)
    assert "result" not in resp.context
    error = resp.context["error"]
    assert "No thresholds are recommended" in error and "0 of them scored below the review threshold 0.5" in error
    assert "decided audit samples" in error and "Set an audit sample rate above 0" in error
    assert b"Apply the recommendation" not in resp.content

    # With a rate set and samples drawn but not yet decided, it says so instead.
    live.policy.audit_sample_rate = 0.02
    live.policy.save()
    cleared = Event.objects.filter(source=live, score__lt=0.5)[:3]
    for event in cleared:
        ReviewItem.objects.create(
            event=event, source=live, proposed_action="allow", score=event.score, priority=0, kind=ItemKind.AUDIT_SAMPLE
        )
    error = client.get("/models/sources/nsl-kdd/tuning/", QUERY).context["error"]
    assert "3 audit samples wait for a decision" in error and "Set an audit sample rate" not in error


def test_costs_are_bounded_and_unused_actions_are_not_tuned(client, carol, live):
    login(client, carol)
    huge = {**QUERY, "cost_missed": 1e308, "cost_review": 1e308, "cost_step_up": 1e308, "cost_deny": 1e308, "cost_block": 1e308}
    resp = client.get("/models/sources/nsl-kdd/tuning/", huge)
    assert "result" not in resp.context and resp.context["form"].errors.keys() >= {"cost_missed", "cost_block"}
    assert b"inf" not in resp.content.replace(b"info", b"")

    assert "block" not in {t["action"] for t in live.policy.thresholds}
    resp = client.get("/models/sources/nsl-kdd/tuning/", {**QUERY, "cost_block": 30})
    result = resp.context["result"]
    assert "block" not in result["recommended"]["thresholds"] and "block" not in result["proposed"]["thresholds"]
    assert any("block is not used by the policy" in n for n in result["notes"])


def test_preview_form_offers_second_opinion_as_checkboxes(client, carol, live):
    login(client, carol)
    live.policy.four_eyes_actions = ["deny"]
    live.policy.save()
    resp = client.get("/models/sources/nsl-kdd/tuning/", QUERY)
    html = resp.content.decode()
    assert 'name="four_eyes_actions" type="number"' not in html
    boxes = [part for part in html.split("<input")[1:] if 'name="four_eyes_actions"' in part and 'type="checkbox"' in part]
    assert {b.split('value="')[1].split('"')[0] for b in boxes} == {"step_up", "deny", "block"}
    assert sum("checked" in b.split(">")[0] for b in boxes) == 1  # the policy's choice is ticked

    # Ticked in a preview, it goes with the thresholds applied; a post that does not give it leaves it alone.
    preview = client.get(
        "/models/sources/nsl-kdd/tuning/",
        {**QUERY, "review_threshold": 0.6, "deny": 0.95, "four_eyes_actions": ["step_up", "deny"]},
    )
    assert preview.context["four_eyes"] == ["step_up", "deny"]
    client.post(
        "/models/sources/nsl-kdd/tuning/",
        {**QUERY, "review_threshold": 0.6, "deny": 0.95, "four_eyes_given": "1", "four_eyes_actions": ["step_up", "deny"]},
    )
    live.policy.refresh_from_db()
    assert live.policy.four_eyes_actions == ["step_up", "deny"]
    client.post("/models/sources/nsl-kdd/tuning/", {**QUERY, "review_threshold": 0.6, "deny": 0.9})
    live.policy.refresh_from_db()
    assert live.policy.four_eyes_actions == ["step_up", "deny"] and live.policy.thresholds[-1]["min_score"] == 0.9


def test_invalid_preview_thresholds_are_shown_back_with_the_reason(client, carol, live):
    login(client, carol)
    resp = client.get("/models/sources/nsl-kdd/tuning/", {**QUERY, "review_threshold": 0.9, "step_up": 0.5, "deny": 0.8})
    html = resp.content.decode()
    assert resp.status_code == 200
    assert "Not previewed:" in html and "below the review threshold" in html
    assert "custom" not in resp.context["result"]
    # The typed values stay in the form rather than being replaced by the recommendation.
    assert 'id="preview_review_threshold" name="review_threshold" type="number" step="0.001" min="0" max="1" value="0.9"' in html
    assert 'id="preview_step_up" name="step_up" type="number" step="0.001" min="0" max="1" value="0.5"' in html
