"""Monitoring snapshots: drift against the champion's training data, overturn rate per day,
missed-threat estimate from audit samples, alerts, the propose-only switch and the periodic task."""

from datetime import timedelta

import numpy as np
import pytest
from django.conf import settings
from django.template import RequestContext, Template
from django.template.loader import render_to_string
from django.utils import timezone

from models_registry import monitoring, services, tasks
from models_registry.models import LearningSettings, MonitoringSnapshot
from reviews.choices import EventStatus, ItemKind, LabelOrigin, ReviewState, VerdictChoice
from reviews.models import AuditEntry, Event, Label, ReviewItem, Verdict
from tests.models_registry.helpers import fake_model, login, toy_drift_reference, toy_rows, toy_source

pytestmark = pytest.mark.django_db


def test_wilson_interval_known_values():
    low, high = monitoring.wilson_interval(0, 100)
    assert low == 0.0 and high == pytest.approx(0.0370, abs=1e-3)  # the "rule of three" neighbourhood
    low, high = monitoring.wilson_interval(50, 100)
    assert (low, high) == (pytest.approx(0.4038, abs=1e-3), pytest.approx(0.5962, abs=1e-3))
    assert monitoring.wilson_interval(0, 0) == (0.0, 1.0)


def test_missed_threat_estimate_scales_to_events_per_day():
    m = monitoring.missed_threat_estimate(sampled=200, threats=4, below_threshold=70_000, days=7)
    assert m["rate"] == 0.02 and m["low"] < 0.02 < m["high"]
    assert m["per_day"] == pytest.approx(0.02 * 10_000)
    assert m["per_day_low"] < m["per_day"] < m["per_day_high"]
    assert monitoring.missed_threat_estimate(sampled=0, threats=0, below_threshold=10, days=7)["rate"] is None


@pytest.fixture
def watched():
    """A toy source whose champion was trained on toy_rows (its stored drift reference)."""
    source = toy_source()
    champion = fake_model(source, status="champion", training_manifest={"drift_reference": toy_drift_reference()})
    return source, champion


def scored_events(source, champion, n, *, shift=0.0, seed=1, prefix="r"):
    rows, _ = toy_rows(n, seed=seed, shift=shift)
    now = timezone.now()
    return Event.objects.bulk_create(
        [
            Event(
                source=source,
                external_id=f"{prefix}-{i}",
                entity="h",
                occurred_at=now - timedelta(hours=1),
                attributes=r,
                status=EventStatus.CLEARED,
                score=float(1 / (1 + np.exp(-r["x1"]))),
                model_version=champion,
                scored_at=now - timedelta(minutes=5),
            )
            for i, r in enumerate(rows)
        ]
    )


def test_stable_traffic_raises_no_alert(watched):
    source, champion = watched
    scored_events(source, champion, 1000)
    snap = monitoring.monitoring_snapshot_create(source=source)
    assert snap.events_scored == 1000 and snap.model_version == champion
    assert snap.score_psi < 0.05 and snap.max_attribute_psi < 0.05
    assert snap.alerts == []


def test_shifted_traffic_raises_drift_alerts_naming_the_attribute(watched):
    source, champion = watched
    scored_events(source, champion, 1000, shift=1.5)
    snap = monitoring.monitoring_snapshot_create(source=source)
    assert snap.score_psi > 0.25
    assert snap.attribute_psi["x1"] > 0.25 and snap.attribute_psi["x2"] < 0.1
    codes = {a["code"] for a in snap.alerts}
    assert codes == {"score_drift", "attribute_drift"}
    attribute_alert = next(a for a in snap.alerts if a["code"] == "attribute_drift")
    assert attribute_alert["attributes"] == ["x1"]
    assert snap.score_bins["recent"] and len(snap.score_bins["recent"]) == len(snap.score_bins["reference"])


def test_too_few_events_or_no_reference_gives_a_note_not_a_figure(watched):
    source, champion = watched
    scored_events(source, champion, 50, shift=3)
    snap = monitoring.monitoring_snapshot_create(source=source)
    assert snap.score_psi is None and snap.alerts == []
    assert any("drift needs 200" in n for n in snap.notes)


def decide(source, n, overturned, *, kind=ItemKind.FLAGGED, reviewer, threats=0, prefix="d"):
    """n decided items of a kind; for flagged ones `overturned` are overturns, for audit samples
    `threats` are labelled threats."""
    now = timezone.now()
    for i in range(n):
        event = Event.objects.create(
            source=source,
            external_id=f"{prefix}-{i}",
            entity="h",
            occurred_at=now,
            attributes={},
            status=EventStatus.DECIDED,
            score=0.9 if kind == ItemKind.FLAGGED else 0.1,
            scored_at=now,
        )
        item = ReviewItem.objects.create(
            event=event,
            source=source,
            proposed_action="deny",
            score=event.score,
            priority=1,
            kind=kind,
            state=ReviewState.DECIDED,
        )
        is_overturn = i < overturned
        verdict = Verdict.objects.create(
            item=item,
            reviewer=reviewer,
            verdict=VerdictChoice.OVERTURN if is_overturn else VerdictChoice.APPROVE,
            reason="other",
        )
        if kind == ItemKind.AUDIT_SAMPLE:
            Label.objects.create(event=event, is_threat=i < threats, origin=LabelOrigin.AUDIT_SAMPLE, verdict=verdict)
        else:
            Label.objects.create(event=event, is_threat=not is_overturn, origin=LabelOrigin.VERDICT, verdict=verdict)


def test_overturn_rate_per_day_and_its_alert_needs_a_minimum_sample(watched, alice):
    source, _ = watched
    decide(source, 10, 8, reviewer=alice)
    snap = monitoring.monitoring_snapshot_create(source=source)
    assert (snap.decided, snap.overturned, snap.overturn_rate) == (10, 8, 0.8)
    assert snap.overturn_by_day[0]["decided"] == 10 and snap.overturn_by_day[0]["day"] == timezone.now().date().isoformat()
    assert snap.alerts == []  # 10 items are fewer than the minimum sample of 30
    decide(source, 30, 20, reviewer=alice, prefix="more")
    snap = monitoring.monitoring_snapshot_create(source=source)
    assert snap.decided == 40 and [a["code"] for a in snap.alerts] == ["overturn_rate"]
    # Undone verdicts and audit samples do not count as overturns of flagged items.
    Verdict.objects.filter(item__event__external_id__startswith="more-").update(undone_at=timezone.now())
    decide(source, 40, 40, kind=ItemKind.AUDIT_SAMPLE, reviewer=alice, prefix="audit")
    snap = monitoring.monitoring_snapshot_create(source=source)
    assert (snap.decided, snap.overturned) == (10, 8)


def test_missed_threats_estimated_from_audit_samples_with_interval(watched, alice):
    source, champion = watched
    scored_events(source, champion, 300)  # cleared events: the population the audit sample came from
    decide(source, 40, 0, kind=ItemKind.AUDIT_SAMPLE, reviewer=alice, threats=4)
    snap = monitoring.monitoring_snapshot_create(source=source)
    m = snap.missed_threat
    assert (m["sampled"], m["threats"], m["rate"]) == (40, 4, 0.1)
    assert m["low"] == pytest.approx(monitoring.wilson_interval(4, 40)[0])
    below = sum(1 for e in Event.objects.filter(source=source) if e.score < 0.5)
    assert m["below_threshold"] == below and below > 40  # the audited events (0.1) and the low-scoring cleared ones
    assert "missed_threats" in [a["code"] for a in snap.alerts]  # 10% against the default limit of 2%


def test_alert_switches_to_propose_only_when_the_admin_asked_for_it(watched, carol):
    source, champion = watched
    scored_events(source, champion, 1000, shift=1.5)
    services.learning_settings_update(source=source, actor=carol, auto_propose_only=True)
    snap = monitoring.monitoring_snapshot_create(source=source)
    assert snap.switched_to_propose_only
    learning = LearningSettings.objects.get(source=source)
    assert learning.propose_only and "score PSI" in learning.propose_only_reason and learning.propose_only_since
    entry = AuditEntry.objects.get(verb="learning.propose_only")
    assert entry.actor_label == "system:monitoring" and entry.after["propose_only"] is True
    again = monitoring.monitoring_snapshot_create(source=source)
    assert not again.switched_to_propose_only  # already propose-only: nothing to switch
    assert AuditEntry.objects.filter(verb="learning.propose_only").count() == 1


def test_without_auto_switch_the_flag_stays_off(watched):
    source, champion = watched
    scored_events(source, champion, 1000, shift=1.5)
    snap = monitoring.monitoring_snapshot_create(source=source)
    assert snap.alerts and not snap.switched_to_propose_only
    assert not LearningSettings.objects.filter(source=source, propose_only=True).exists()


def test_periodic_task_stores_a_snapshot_per_source_with_a_champion(watched):
    source, champion = watched
    toy_source("no-model")
    scored_events(source, champion, 10)
    assert "monitor-sources" in settings.CELERY_BEAT_SCHEDULE
    assert settings.CELERY_BEAT_SCHEDULE["monitor-sources"]["task"] == "models_registry.tasks.monitor_sources"
    ids = tasks.monitor_sources.delay().get()
    assert list(MonitoringSnapshot.objects.values_list("id", "source__name")) == [(ids[0], "toy")]


def test_alerts_partial_escapes_attribute_names(watched, rf, carol, alice):
    source, champion = watched
    MonitoringSnapshot.objects.create(
        source=source,
        window_start=timezone.now(),
        window_end=timezone.now(),
        alerts=[{"code": "attribute_drift", "message": "1 attribute(s) with PSI above 0.25: <script>alert(1)</script> (0.90)"}],
    )
    from models_registry.selectors import monitoring_alerts_current

    html = render_to_string("models_registry/_alerts.html", {"monitoring_alerts": monitoring_alerts_current()})
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "/models/sources/toy/monitoring/" in html
    # The template tag other pages can use shows the alerts to admins only.
    tag = Template("{% load registry %}{% monitoring_alerts %}")
    for user, shown in ((carol, True), (alice, False)):
        request = rf.get("/")
        request.user = user
        out = tag.render(RequestContext(request, {}))
        assert ("Model alerts" in out) is shown and "<script>" not in out


@pytest.mark.parametrize("persona", ["carol", "alice", "mallory", "ingest", None])
def test_monitoring_pages_plots_and_api_by_persona(client, api, request, persona, watched):
    source, champion = watched
    scored_events(source, champion, 400, shift=1.0)
    monitoring.monitoring_snapshot_create(source=source)
    user = request.getfixturevalue(persona) if persona else None
    if user is not None:
        login(client, user)
    pages = ["/models/monitoring/", "/models/sources/toy/monitoring/"]
    plots = [f"/models/sources/toy/monitoring/{k}.png" for k in ("psi", "scores", "overturns", "attributes")]
    expected = 200 if persona == "carol" else (302 if user is None else 403)
    for url in pages + plots:
        assert client.get(url).status_code == expected, url
    run = client.post("/models/sources/toy/monitoring/run/")
    assert run.status_code == (302 if persona == "carol" or user is None else 403)
    api_expected = 200 if persona == "carol" else (401 if user is None else 403)
    assert api(user).get("/api/v1/sources/toy/monitoring/").status_code == api_expected
    assert api(user).post("/api/v1/sources/toy/monitoring/").status_code == (201 if persona == "carol" else api_expected)
    if persona == "carol":
        page = client.get("/models/sources/toy/monitoring/")
        assert b"score PSI" in page.content and b"Compute now" in page.content
        png = client.get("/models/sources/toy/monitoring/attributes.png")
        assert png["Content-Type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n" and len(png.content) > 5000
        data = api(user).get("/api/v1/sources/toy/monitoring/").json()
        assert len(data) == 3 and data[0]["attribute_psi"]["x1"] > 0.25
        assert client.get("/models/sources/toy/monitoring/nope.png").status_code == 404
    else:
        assert MonitoringSnapshot.objects.count() == 1


def test_audit_sample_note_says_what_is_missing(watched):
    """No decided audit sample: the note asks for a rate only when none is set; with a rate and
    samples waiting it says how many wait for a decision."""
    source, champion = watched
    events = scored_events(source, champion, 30)
    snap = monitoring.monitoring_snapshot_create(source=source)
    assert any("set an audit sample rate" in n for n in snap.notes)

    source.policy.audit_sample_rate = 0.02
    source.policy.save()
    snap = monitoring.monitoring_snapshot_create(source=source)
    assert not any("set an audit sample rate" in n for n in snap.notes)
    assert any("no audit samples were drawn in the window (audit sample rate 0.02)" in n for n in snap.notes)

    for event in events[:3]:
        ReviewItem.objects.create(
            event=event, source=source, proposed_action="allow", score=event.score, priority=0, kind=ItemKind.AUDIT_SAMPLE
        )
    snap = monitoring.monitoring_snapshot_create(source=source)
    assert "3 audit samples wait for a decision: missed threats are estimated once they are decided" in snap.notes
    assert not any("set an audit sample rate" in n for n in snap.notes)
