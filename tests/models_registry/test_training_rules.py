"""Training-data rules and the gate end to end, on a small constructed source whose threats are known:
cold start and its stated reason, refusal of one-class or too-few labels, the time split,
audit-sample labels kept out of fitting, de-duplication per event, a clearly better candidate
promoted and a slightly noisier one not rejected, robustness of the pipelines, and the row's
record of who promoted or rolled back and why."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from models_registry import scoring, selectors, services
from models_registry.models import ModelVersion
from reviews.choices import LabelOrigin
from reviews.models import AuditEntry, Label
from tests.models_registry.helpers import fake_model, login, toy_events, toy_rows, toy_source

pytestmark = pytest.mark.django_db


def train(source):
    return services.model_train(model=services.training_start(source=source, triggered_by="test"))


@pytest.fixture
def small_minimum(settings):
    settings.SECAI_MIN_LABELS_PER_CLASS = 20


def test_one_class_labels_mean_cold_start_with_the_reason_stated(small_minimum):
    source = toy_source()
    events = toy_events(source, 300)
    Label.objects.filter(event__in=events).update(is_threat=False)
    model = train(source)
    assert model.status == "champion" and model.algorithm == "isolation_forest"
    manifest = model.training_manifest
    assert manifest["mode"] == "cold_start" and manifest["unsupervised"] is True
    assert "one class only: all 240 training labels are benign" in manifest["decision"]
    assert "cold start" in model.status_reason
    assert [h["status"] for h in model.history] == ["training", "candidate", "champion"]


def test_a_cold_start_from_too_few_events_is_refused_and_nothing_is_promoted(settings):
    # One event: IsolationForest would score everything about the same, at the review threshold,
    # and queue the whole stream.
    assert settings.SECAI_MIN_COLD_START_EVENTS == 200
    source = toy_source()
    toy_events(source, 1, origin=None)
    model = train(source)
    assert model.status == "rejected"
    assert "too few events for a cold start" in model.status_reason
    assert "has 1 event, an unsupervised model needs at least 200" in model.status_reason
    assert "no labels in the training part" in model.status_reason
    assert model.training_manifest["mode"] == "refused"
    assert selectors.champion_of(source=source) is None and not model.artifact_path


def test_the_cold_start_minimum_is_set_per_source_by_an_admin(api, carol):
    source = toy_source()
    toy_events(source, 199, origin=None)
    assert train(source).status == "rejected"
    bad = api(carol).patch("/api/v1/sources/toy/learning/", {"min_cold_start_events": 0}, format="json")
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "min_cold_start_events"
    ok = api(carol).patch("/api/v1/sources/toy/learning/", {"min_cold_start_events": 150}, format="json")
    assert ok.status_code == 200 and ok.json()["min_cold_start_events"] == 150
    model = train(source)
    assert model.status == "champion" and model.algorithm == "isolation_forest"
    assert model.training_manifest["train_rows"] == 199


def test_too_few_labels_of_a_class_is_explained(settings):
    settings.SECAI_MIN_LABELS_PER_CLASS = 50
    settings.SECAI_MIN_COLD_START_EVENTS = 150  # this source has 150 events
    source = toy_source()
    toy_events(source, 150)
    model = train(source)
    y = np.array(selectors.labelled_rows(source=source).y[:120])
    assert model.algorithm == "isolation_forest"
    assert (
        f"too few labels: {y.sum()} threat and {120 - y.sum()} benign in the training part" in model.training_manifest["reason"]
    )
    assert "at least 50 of each" in model.training_manifest["decision"]


def test_supervised_champion_is_kept_when_labels_turn_one_class(small_minimum):
    source = toy_source()
    toy_events(source, 400)
    v1 = train(source)
    assert v1.status == "champion" and v1.algorithm == "hist_gradient_boosting"
    Label.objects.filter(event__source=source).update(is_threat=True)
    v2 = train(source)
    assert v2.status == "rejected" and v2.sha256 == "" and v2.artifact_path == ""
    assert v2.status_reason.startswith("refused: one class only: all 320 training labels are threat")
    assert "supervised champion v1 stays" in v2.status_reason
    assert v2.training_manifest["mode"] == "refused"
    assert AuditEntry.objects.filter(verb="model.refuse", object_id=str(v2.pk)).exists()
    assert selectors.champion_of(source=source).pk == v1.pk
    with pytest.raises(services.ServiceError, match="cannot be promoted"):
        services.model_promote(model=v2, actor=None, reason="try")


def test_one_time_cut_splits_every_origin_audit_samples_included(small_minimum):
    source = toy_source()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    toy_events(source, 500, start=start)
    # Audit samples over the whole period: those before the held-out period are fitted.
    toy_events(source, 60, seed=9, prefix="audit", origin=LabelOrigin.AUDIT_SAMPLE, start=start + timedelta(seconds=30))
    Label.objects.filter(event__source=source, origin=LabelOrigin.IMPORT, event__external_id__endswith="7").update(weight=2.0)
    model = train(source)
    m = model.training_manifest
    assert m["labels"] == 560 and m["labels_by_origin"] == {"import": 500, "audit_sample": 60}
    train_part, holdout = m["split"]["train"], m["holdout"]
    audit = m["audit_sample_labels"]
    assert audit["count"] == 60 and audit["fitted"] + audit["held_out"] == 60 and audit["fitted"] > 0
    assert train_part["by_origin"] == {"import": 400, "audit_sample": audit["fitted"]}
    assert m["train_rows"] == train_part["rows"] == 400 + audit["fitted"]
    assert holdout["rows"] == 100 + audit["held_out"]
    assert holdout["by_origin"].get("audit_sample", 0) == audit["held_out"] and holdout["by_origin"]["import"] == 100
    # Everything held out is newer than everything fitted.
    assert m["holdout_from"] > train_part["time_range"][1] == m["train_until"]
    assert m["weighted"] is True


def test_a_later_verdict_replaces_the_imported_label(small_minimum):
    source = toy_source()
    events = toy_events(source, 10)
    Label.objects.update_or_create(event=events[0], defaults={"is_threat": True, "origin": LabelOrigin.VERDICT})
    rows = selectors.labelled_rows(source=source)
    assert len(rows.y) == 10 and rows.origins.count(LabelOrigin.VERDICT) == 1 and rows.y[0] == 1


def test_clearly_better_supervised_candidate_replaces_a_cold_start_champion(small_minimum, client, carol):
    source = toy_source()
    events = toy_events(source, 600, origin=None)
    v1 = train(source)
    assert v1.algorithm == "isolation_forest" and v1.status == "champion"
    _, y = toy_rows(600)
    Label.objects.bulk_create(
        [Label(event=e, is_threat=bool(t), origin=LabelOrigin.IMPORT) for e, t in zip(events, y, strict=True)]
    )
    v2 = train(source)
    report = v2.validation_report
    assert v2.status == "champion" and v2.algorithm == "hist_gradient_boosting", v2.status_reason
    assert report["bootstrap"]["delta_pr_auc"]["low"] > 0  # significantly better, not merely not worse
    assert all(c["passed"] for c in report["checks"]) and len(report["checks"]) == 3
    assert set(report["curves"]) == {"candidate", "champion"}
    assert set(report["curves"]["candidate"]["confusion"]) == {"review", "step_up", "deny"}
    v1.refresh_from_db()
    assert v1.status == "retired" and v1.history[-1]["reason"].startswith("replaced by v2")
    assert v1.history[-1]["by"] == "system:validation-gate"
    assert v2.promoted_by == "system:validation-gate"
    login(client, carol)
    for model in (v1, v2):
        page = client.get(f"/models/{model.pk}/report/")
        assert page.status_code == 200
    assert b"champion v1 at the time" in page.content and b"stratified paired bootstrap" in page.content
    assert client.get(f"/models/{v2.pk}/report/confusion.png").content.startswith(b"\x89PNG")


def flip(pks):
    threats = list(Label.objects.filter(pk__in=pks, is_threat=True).values_list("pk", flat=True))
    Label.objects.filter(pk__in=pks, is_threat=False).update(is_threat=True)
    Label.objects.filter(pk__in=threats).update(is_threat=False)


def test_slightly_noisier_labels_are_not_rejected_but_inverted_ones_are(small_minimum):
    source = toy_source()
    toy_events(source, 800)
    assert train(source).status == "champion"
    # 3% of the older labels flipped: the new model is a little different, not significantly worse.
    ordered = list(Label.objects.filter(event__source=source).order_by("event__occurred_at").values_list("pk", flat=True))
    rng = np.random.default_rng(4)
    noisy = [pk for pk in ordered[:640] if rng.random() < 0.03]
    assert len(noisy) > 10
    flip(noisy)
    v2 = train(source)
    assert v2.status == "champion", v2.status_reason
    flip(ordered[:640])
    v3 = train(source)
    assert v3.status == "rejected" and "significantly worse PR AUC than champion v2" in v3.status_reason


def test_pipeline_scores_unseen_categories_missing_and_odd_types(small_minimum):
    source = toy_source()
    toy_events(source, 300)
    assert train(source).algorithm == "hist_gradient_boosting"
    rows = [
        {"x1": 2.0, "x2": 0.1, "proto": "never-seen", "admin": True},
        {"x1": "not a number", "proto": None},
        {},
        {"x1": True, "x2": "3.5", "proto": 17, "admin": "yes"},
    ]
    outcome = scoring.score_rows(source_id=source.pk, rows=rows, policy=source.policy)
    assert outcome is not None and len(outcome.scores) == 4
    assert np.all(np.isfinite(outcome.scores)) and np.all((outcome.scores >= 0) & (outcome.scores <= 1))
    assert outcome.scores[0] > outcome.scores[2]  # x1 = 2 is a threat in this data


def test_promote_and_rollback_over_the_api_record_who_and_why(api, carol, alice):
    source = toy_source()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    fake_model(source, version=1, status="retired", promoted_at=t0, promoted_by="system")
    v2 = fake_model(source, version=2, status="champion", promoted_at=t0 + timedelta(days=1))
    v3 = fake_model(source, version=3, status="rejected")
    assert api(carol).post(f"/api/v1/models/{v3.pk}/promote/", {}, format="json").status_code == 400
    assert api(carol).post(f"/api/v1/models/{v3.pk}/promote/", {"reason": "   "}, format="json").status_code == 400
    assert api(alice).post(f"/api/v1/models/{v3.pk}/promote/", {"reason": "mine"}, format="json").status_code == 403
    resp = api(carol).post(f"/api/v1/models/{v3.pk}/promote/", {"reason": "gate too strict on a tiny holdout"}, format="json")
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["status"] == "champion" and body["promoted_by"] == "carol"
    assert body["status_reason"] == "gate too strict on a tiny holdout"
    assert body["history"][-1] == {**body["history"][-1], "status": "champion", "by": "carol"}
    v2.refresh_from_db()
    assert v2.status == "retired" and v2.history[-1]["by"] == "carol" and "replaced by v3" in v2.history[-1]["reason"]
    back = api(carol).post(f"/api/v1/models/{v3.pk}/rollback/", {"reason": "alerts doubled"}, format="json")
    assert back.status_code == 200 and back.json()["version"] == 2 and back.json()["status"] == "champion"
    rollback = AuditEntry.objects.get(verb="model.rollback")
    assert rollback.actor == carol and rollback.object_id == str(v3.pk)
    assert rollback.after == {"status": "retired", "restored_version": 2, "reason": "alerts doubled"}
    promote = AuditEntry.objects.filter(verb="model.promote").latest("id")
    assert promote.after["reason"] == "rollback from v3: alerts doubled" and promote.actor == carol
    again = api(carol).post(f"/api/v1/models/{v3.pk}/rollback/", {"reason": "twice"}, format="json")
    assert again.status_code == 409
    assert ModelVersion.objects.filter(source=source, status="champion").count() == 1
