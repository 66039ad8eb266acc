"""Training, the validation gate, promotion and rollback (model file integrity: test_model_integrity.py)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from models_registry import ml, services
from models_registry.models import ModelVersion
from reviews.choices import EventStatus
from reviews.models import AuditEntry, Event, Label
from reviews.services import events_ingest, events_score
from tests.conftest import NSL_LIVE, nsl_events

pytestmark = pytest.mark.django_db


def champion(source):
    return ModelVersion.objects.get(source=source, status="champion")


def test_supervised_champion_records_manifest_metrics_and_artifact(trained_source):
    model = champion(trained_source)
    assert model.algorithm == "hist_gradient_boosting" and model.version == 1
    manifest = model.training_manifest
    assert manifest["labels"] == 3000 and manifest["labels_by_origin"] == {"import": 3000}
    assert manifest["train_rows"] == 2400 and manifest["holdout_rows"] == 600
    assert 0.5 < model.metrics["pr_auc"] <= 1.0
    assert Path(model.artifact_path).exists() and ml.sha256_of(Path(model.artifact_path)) == model.sha256
    assert AuditEntry.objects.filter(verb="model.promote", object_id=str(model.pk)).exists()


def test_cold_start_without_labels_trains_isolation_forest(nsl_source):
    rows = [r for r, _ in nsl_events(NSL_LIVE, 500, prefix="u")]
    events_ingest(source=nsl_source, rows=rows, status=EventStatus.HISTORICAL)
    model = services.model_train(model=services.training_start(source=nsl_source, triggered_by="test"))
    assert model.status == "champion" and model.algorithm == "isolation_forest"
    assert model.training_manifest["unsupervised"] is True
    assert "cold start" in model.status_reason


def test_training_without_any_event_is_refused_with_a_clear_message(nsl_source):
    model = services.model_train(model=services.training_start(source=nsl_source, triggered_by="test"))
    assert model.status == "rejected" and "no events to learn from" in model.status_reason
    assert model.error == ""


def test_gate_rejects_a_candidate_trained_on_corrupted_labels(trained_source):
    # Invert the labels of the older 80% (the training part of the time split); the held-out
    # recent labels stay true, so the candidate must look significantly worse than the champion.
    ordered = list(
        Label.objects.filter(event__source=trained_source)
        .order_by("event__occurred_at", "event_id")
        .values_list("pk", "is_threat")
    )
    cut = int(len(ordered) * 0.8)
    for pk, is_threat in ordered[:cut]:
        Label.objects.filter(pk=pk).update(is_threat=not is_threat)
    model = services.model_train(model=services.training_start(source=trained_source, triggered_by="test"))
    assert model.status == "rejected", model.status_reason
    assert "significantly worse" in model.status_reason or "below the minimum" in model.status_reason
    assert champion(trained_source).version == 1


def test_gate_promotes_an_equivalent_candidate(trained_source):
    model = services.model_train(model=services.training_start(source=trained_source, triggered_by="test"))
    assert model.status == "champion", model.status_reason
    report = model.validation_report
    assert report["bootstrap"]["delta_pr_auc"]["high"] >= 0  # not significantly worse
    assert ModelVersion.objects.get(source=trained_source, version=1).status == "retired"


def test_one_training_at_a_time(trained_source):
    services.training_start(source=trained_source, triggered_by="a")
    with pytest.raises(services.TrainingConflict):
        services.training_start(source=trained_source, triggered_by="b")
    assert ModelVersion.objects.filter(source=trained_source, status="training").count() == 1


def test_promote_and_rollback_keep_exactly_one_champion(trained_source, carol):
    v2 = services.model_train(model=services.training_start(source=trained_source, triggered_by="test"))
    assert v2.status == "champion"
    back = services.model_rollback(model=v2, actor=carol, reason="alerts doubled")
    assert back.version == 1 and back.status == "champion" and back.promoted_by == "carol"
    assert ModelVersion.objects.filter(source=trained_source, status="champion").count() == 1
    with pytest.raises(services.ItemConflict):
        services.model_promote(model=back, actor=carol, reason="again")
    entry = AuditEntry.objects.filter(verb="model.promote", actor=carol).get()
    assert entry.after["version"] == 1 and "alerts doubled" in entry.after["reason"]


def test_scoring_is_idempotent_and_records_the_model(trained_source):
    rows = [r for r, _ in nsl_events(NSL_LIVE, 300, prefix="s", start=datetime.now(UTC) - timedelta(hours=1))]
    ids = [e["id"] for e in events_ingest(source=trained_source, rows=rows).events]
    assert events_score(event_ids=ids) == 300
    before = dict(Event.objects.filter(id__in=ids).values_list("id", "scored_at"))
    assert events_score(event_ids=ids) == 0  # a duplicate delivery changes nothing
    assert dict(Event.objects.filter(id__in=ids).values_list("id", "scored_at")) == before
    model = champion(trained_source)
    assert set(Event.objects.filter(id__in=ids).values_list("model_version", flat=True)) == {model.pk}
    queued = Event.objects.filter(id__in=ids, status="queued")
    assert queued.count() == Event.objects.filter(id__in=ids, score__gte=trained_source.policy.review_threshold).count()
    assert all(e.review_item.proposed_action == e.proposed_action for e in queued)


def test_no_champion_leaves_events_received_for_the_sweeper(nsl_source, settings, monkeypatch):
    rows = [r for r, _ in nsl_events(NSL_LIVE, 10, prefix="n")]
    ids = [e["id"] for e in events_ingest(source=nsl_source, rows=rows).events]
    assert events_score(event_ids=ids) == 0
    assert Event.objects.filter(id__in=ids, status="received").count() == 10
    sent = []
    monkeypatch.setattr("reviews.tasks.score_events.delay", lambda batch: sent.append(batch))
    from reviews.services import events_sweep_unscored

    assert events_sweep_unscored(older_than_seconds=0) == 10
    assert sorted(sum(sent, [])) == sorted(ids)
