"""Per-source learning settings: defaults, validation, the django-celery-beat schedule, the
retraining triggers that read them, the audit trail, and who may change them."""

import json

import pytest
from django_celery_beat.models import PeriodicTask

from models_registry import selectors, services, tasks
from models_registry.models import LearningSettings, ModelVersion
from reviews.choices import LabelOrigin
from reviews.models import AuditEntry, Label
from reviews.services import ServiceError
from tests.models_registry.helpers import login, toy_events, toy_source

pytestmark = pytest.mark.django_db


def test_defaults_come_from_settings_until_an_admin_saves(settings):
    settings.SECAI_MIN_LABELS_PER_CLASS = 7
    settings.SECAI_MIN_PR_AUC = 0.42
    source = toy_source()
    learning = selectors.learning_settings_get(source=source)
    assert learning.pk is None and learning.min_labels_per_class == 7 and learning.min_pr_auc == 0.42
    assert learning.retrain_schedule == "0 3 * * *"
    assert not LearningSettings.objects.exists()


def test_saving_creates_the_beat_entry_and_audits(carol):
    source = toy_source()
    learning = services.learning_settings_update(
        source=source, actor=carol, retrain_schedule=" 30  2 * * 1-5 ", min_labels_per_class=20, audit_sample_rate=0.05
    )
    task = learning.periodic_task
    assert task.task == "models_registry.tasks.retrain_source" and json.loads(task.args) == [source.pk] and task.enabled
    cron = task.crontab
    assert (cron.minute, cron.hour, cron.day_of_week, str(cron.timezone)) == ("30", "2", "1-5", "UTC")
    assert learning.retrain_schedule == "30 2 * * 1-5" and learning.updated_by == "carol"
    entry = AuditEntry.objects.get(verb="learning.update")
    assert entry.actor == carol and entry.before["min_labels_per_class"] == 50 and entry.after["min_labels_per_class"] == 20
    source.policy.refresh_from_db()
    assert source.policy.audit_sample_rate == 0.05
    assert AuditEntry.objects.get(verb="policy.update").after["audit_sample_rate"] == 0.05
    # A new schedule changes the same entry; a blank one disables it.
    services.learning_settings_update(source=source, actor=carol, retrain_schedule="0 4 * * *")
    assert PeriodicTask.objects.filter(task="models_registry.tasks.retrain_source").count() == 1
    task.refresh_from_db()
    assert task.crontab.hour == "4" and task.enabled
    services.learning_settings_update(source=source, actor=carol, retrain_schedule="")
    task.refresh_from_db()
    assert not task.enabled


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"retrain_schedule": "* * * * *"}, "at most one run an hour"),
        ({"retrain_schedule": "0 25 * * *"}, "not a valid schedule"),
        ({"retrain_schedule": "0 3 * *"}, "five fields"),
        ({"min_pr_auc": 1.5}, "min_pr_auc"),
        ({"min_labels_per_class": 0}, "min_labels_per_class"),
        ({"colour": "blue"}, "unknown settings"),
    ],
)
def test_invalid_settings_are_refused_and_change_nothing(carol, changes, message):
    source = toy_source()
    with pytest.raises(ServiceError, match=message):
        services.learning_settings_update(source=source, actor=carol, **changes)
    assert not LearningSettings.objects.exists() and not PeriodicTask.objects.filter(task=services.RETRAIN_TASK).exists()


def test_schedule_and_verdict_triggers_use_the_source_settings(carol, monkeypatch, django_capture_on_commit_callbacks):
    own = toy_source("own")
    default = toy_source("default")
    services.learning_settings_update(source=own, actor=carol, retrain_after_verdicts=3)
    sent = []
    monkeypatch.setattr(tasks.train_model, "delay", lambda pk: sent.append(pk))
    # The installation's nightly run skips sources with their own schedule.
    with django_capture_on_commit_callbacks(execute=True):
        started = tasks.retrain_all_sources()
    assert [ModelVersion.objects.get(pk=pk).source.name for pk in started] == ["default"]
    # The source's own beat entry starts its run; a duplicated beat starts nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        first = tasks.retrain_source(own.pk)
        assert first is not None and tasks.retrain_source(own.pk) is None
    # Enqueued only once the run's row is committed, and only once.
    assert sent == [*started, first]
    ModelVersion.objects.filter(pk=first).update(status="failed")
    # Three new verdicts are needed for own; default follows SECAI_RETRAIN_AFTER_VERDICTS (0: off).
    events = toy_events(own, 3, origin=None, prefix="v")
    Label.objects.bulk_create([Label(event=e, is_threat=True, origin=LabelOrigin.VERDICT) for e in events[:2]])
    assert tasks.retrain_if_enough_verdicts(own.pk) is None
    Label.objects.create(event=events[2], is_threat=False, origin=LabelOrigin.VERDICT)
    assert tasks.retrain_if_enough_verdicts(own.pk) is not None
    assert tasks.retrain_if_enough_verdicts(default.pk) is None


def test_console_form_saves_and_shows_errors(client, carol):
    source = toy_source()
    login(client, carol)
    page = client.get("/models/sources/toy/settings/")
    assert page.status_code == 200 and b"installation defaults" in page.content
    form = {
        "min_labels_per_class": 10,
        "min_cold_start_events": 300,
        "min_pr_auc": 0.6,
        "max_fpr_at_threshold": 0.2,
        "retrain_after_verdicts": 100,
        "retrain_schedule": "0 3 * * *",
        "monitoring_window_days": 7,
        "score_psi_limit": 0.2,
        "attribute_psi_limit": 0.3,
        "overturn_rate_limit": 0.5,
        "missed_threat_limit": 0.02,
        "min_alert_sample": 30,
        "audit_sample_rate": 0.02,
        "propose_only": "on",
    }
    resp = client.post("/models/sources/toy/settings/", form)
    assert resp.status_code == 302
    learning = LearningSettings.objects.get(source=source)
    assert learning.min_cold_start_events == 300
    assert learning.max_fpr_at_threshold == 0.2 and learning.propose_only and learning.propose_only_reason == "set by carol"
    saved = client.get("/models/sources/toy/settings/").content.decode()
    assert "retrain source toy" in saved and "propose-only" in saved and "installation defaults" not in saved
    bad = client.post("/models/sources/toy/settings/", {**form, "retrain_schedule": "*/5 * * * *", "min_pr_auc": 2})
    assert bad.status_code == 200
    assert b"at most one run an hour" in bad.content and b"less than or equal to 1" in bad.content
    learning.refresh_from_db()
    assert learning.min_pr_auc == 0.6


def test_api_reads_and_patches_settings(api, carol):
    source = toy_source()
    got = api(carol).get("/api/v1/sources/toy/learning/")
    assert got.status_code == 200 and got.json()["min_labels_per_class"] == 50 and got.json()["audit_sample_rate"] == 0.0
    resp = api(carol).patch(
        "/api/v1/sources/toy/learning/",
        {"min_labels_per_class": 5, "audit_sample_rate": 0.1, "retrain_schedule": "15 1 * * *"},
        format="json",
    )
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert (
        body["min_labels_per_class"] == 5 and body["audit_sample_rate"] == 0.1 and body["periodic_task"] == "retrain source toy"
    )
    source.policy.refresh_from_db()
    assert source.policy.audit_sample_rate == 0.1
    bad = api(carol).patch("/api/v1/sources/toy/learning/", {"retrain_schedule": "* * * * *"}, format="json")
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "retrain_schedule"
    assert api(carol).get("/api/v1/sources/nope/learning/").status_code == 404


@pytest.mark.parametrize("persona", ["alice", "mallory", "ingest", None])
def test_only_admins_see_or_change_settings(client, api, request, persona):
    toy_source()
    user = request.getfixturevalue(persona) if persona else None
    if user is not None:
        login(client, user)
    assert client.get("/models/sources/toy/settings/").status_code == (403 if user else 302)
    assert client.post("/models/sources/toy/settings/", {"min_labels_per_class": 1}).status_code == (403 if user else 302)
    expected = 403 if user else 401
    assert api(user).get("/api/v1/sources/toy/learning/").status_code == expected
    assert api(user).patch("/api/v1/sources/toy/learning/", {"min_labels_per_class": 1}, format="json").status_code == expected
    assert not LearningSettings.objects.exists()


def test_schedule_help_text_states_the_hourly_rule_before_it_is_enforced(client, carol):
    toy_source()
    login(client, carol)
    page = client.get("/models/sources/toy/settings/").content.decode()
    assert "at most one run an hour" in page and "*/30" in page
