"""A model file damaged on disk: refused by its sha256, scoring continues with the last good
champion, and the admins see an alert and an audit entry. (tests/integration/test_faults.py
does the same with a real worker process.)"""

from pathlib import Path

import pytest
from django.urls import reverse

from models_registry import scoring, services
from models_registry.models import ModelVersion
from models_registry.selectors import monitoring_alerts_current
from reviews.models import AuditEntry, Event
from reviews.services import ServiceError, events_ingest, events_score
from tests.conftest import NSL_LIVE, nsl_events
from tests.models_registry.helpers import damage, second_champion

pytestmark = pytest.mark.django_db


def champion(source) -> ModelVersion:
    return ModelVersion.objects.get(source=source, status="champion")


def score_new(source, n: int, prefix: str) -> list[int]:
    rows = [r for r, _ in nsl_events(NSL_LIVE, n, prefix=prefix)]
    ids = [e["id"] for e in events_ingest(source=source, rows=rows).events]
    events_score(event_ids=ids)
    return ids


def model_versions_of(ids: list[int]) -> set:
    return set(Event.objects.filter(id__in=ids).values_list("model_version__version", flat=True))


def test_a_fresh_process_scores_with_the_last_good_champion(trained_source, carol, alice, client):
    v2 = second_champion(trained_source, carol)
    damage(v2)
    scoring.clear_cache()  # a worker that starts now has nothing loaded

    ids = score_new(trained_source, 40, "a")
    assert model_versions_of(ids) == {1}, "scored by v1, the champion before v2"
    assert not Event.objects.filter(id__in=ids, status="received").exists()

    v2.refresh_from_db()
    assert v2.status == "champion" and v2.integrity_failed_at is not None and "sha256 mismatch" in v2.integrity_error
    entry = AuditEntry.objects.get(verb="model.integrity_failed")
    assert (entry.object_id, entry.actor_label, entry.after["scoring_with"]) == (str(v2.pk), "system:integrity", "v1")
    # Later batches neither hash the bad file again nor write another entry.
    assert model_versions_of(score_new(trained_source, 10, "b")) == {1}
    assert AuditEntry.objects.filter(verb="model.integrity_failed").count() == 1

    (alert,) = [a for entry in monitoring_alerts_current() for a in entry["alerts"]]
    assert alert["code"] == "model_integrity" and "champion v2" in alert["message"]
    client.force_login(carol)
    page = client.get(reverse("reviews:dashboard")).content.decode()
    assert "failed its integrity check" in page and "champion v2" in page
    client.force_login(alice)
    assert "failed its integrity check" not in client.get(reverse("reviews:queue")).content.decode()


def test_a_restored_file_is_used_again_and_the_alert_clears(trained_source, carol):
    v2 = second_champion(trained_source, carol)
    original = damage(v2)
    scoring.clear_cache()
    assert model_versions_of(score_new(trained_source, 10, "c")) == {1}
    Path(v2.artifact_path).write_bytes(original)  # restored from a backup

    assert model_versions_of(score_new(trained_source, 10, "d")) == {2}
    v2.refresh_from_db()
    assert v2.integrity_failed_at is None and v2.integrity_error == ""
    assert AuditEntry.objects.filter(verb="model.integrity_restored", object_id=str(v2.pk)).count() == 1
    assert monitoring_alerts_current() == []


def test_a_process_keeps_the_good_copy_it_loaded_and_the_periodic_check_raises_the_alert(trained_source, carol):
    v2 = second_champion(trained_source, carol)
    assert model_versions_of(score_new(trained_source, 10, "e")) == {2}
    damage(v2)
    assert model_versions_of(score_new(trained_source, 10, "f")) == {2}, "the copy in memory passed its check when loaded"
    assert services.model_files_verify() == [v2.pk]
    assert services.model_files_verify() == [v2.pk]
    assert AuditEntry.objects.filter(verb="model.integrity_failed", object_id=str(v2.pk)).count() == 1
    assert [a["code"] for entry in monitoring_alerts_current() for a in entry["alerts"]] == ["model_integrity"]


def test_no_intact_model_leaves_events_waiting_for_the_sweeper(trained_source):
    damage(champion(trained_source))
    scoring.clear_cache()
    rows = [r for r, _ in nsl_events(NSL_LIVE, 20, prefix="t")]
    ids = [e["id"] for e in events_ingest(source=trained_source, rows=rows).events]
    assert events_score(event_ids=ids) == 0
    assert Event.objects.filter(id__in=ids, status="received").count() == 20
    entry = AuditEntry.objects.get(verb="model.integrity_failed")
    assert entry.after["scoring_with"] == "nothing: events wait unscored"


def test_a_damaged_file_cannot_be_promoted_or_rolled_back_to(trained_source, carol):
    v1 = champion(trained_source)
    v2 = second_champion(trained_source, carol)
    damage(v1)
    with pytest.raises(ServiceError, match="integrity check"):
        services.model_rollback(model=v2, actor=carol, reason="back")
    assert champion(trained_source) == v2
    v1.refresh_from_db()
    assert v1.status == "retired"
