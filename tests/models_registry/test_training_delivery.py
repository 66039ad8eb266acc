"""Training runs reach a worker exactly once: a lost message is sent again by the reaper, and a
second delivery of a run does not train it again."""

from datetime import timedelta

import pytest
from django.utils import timezone

from models_registry import services, tasks
from models_registry.models import ModelVersion
from reviews.models import AuditEntry

pytestmark = pytest.mark.django_db


def test_a_run_whose_message_was_lost_is_sent_again_by_the_reaper(trained_source):
    run = services.training_start(source=trained_source, triggered_by="test")  # its message never sent
    fresh = ModelVersion.objects.filter(pk=run.pk)
    tasks.reap_stale_training()  # eager in unit tests: a sent run trains here
    assert fresh.get().started_at is None, "a run younger than the resend delay is left to its message"

    fresh.update(created_at=timezone.now() - tasks.TRAINING_RESEND_AFTER - timedelta(seconds=1))
    tasks.reap_stale_training()
    run.refresh_from_db()
    assert run.started_at is not None and run.status in ("champion", "rejected"), run.error


def test_a_second_delivery_of_a_run_does_not_train_it_again(trained_source):
    run = services.model_train(model=services.training_start(source=trained_source, triggered_by="test"))
    finished = (run.status, run.started_at, run.finished_at, run.sha256)
    audits = AuditEntry.objects.count()
    assert tasks.train_model(run.pk) == run.status
    again = services.model_train(model=ModelVersion.objects.get(pk=run.pk))
    assert (again.status, again.started_at, again.finished_at, again.sha256) == finished
    assert AuditEntry.objects.count() == audits
