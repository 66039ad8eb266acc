"""Celery tasks of the model side (the "training" queue). Each takes ids and calls one service; a
duplicated beat or a redelivered message is harmless because training_start refuses a second run
per source (a partial unique index) and a run that has started is not started again."""

import logging
from datetime import timedelta

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from models_registry import monitoring, selectors, services
from models_registry.models import LearningSettings, ModelVersion
from reviews.models import Source

logger = logging.getLogger(__name__)


@shared_task
def train_model(model_version_id: int) -> str:
    model = ModelVersion.objects.select_related("source").get(pk=model_version_id)
    if model.started_at is not None:
        return model.status  # a redelivered message: this run has been (or is being) handled
    return services.model_train(model=model).status


def training_request(*, source: Source, triggered_by: str, actor=None) -> ModelVersion:
    """Create the training run's row and hand it to the training queue once that row is committed.
    Raises services.TrainingConflict when a run for the source is already in flight."""
    with transaction.atomic():
        model = services.training_start(source=source, triggered_by=triggered_by, actor=actor)
        transaction.on_commit(lambda: _enqueue_training(model.pk))
    return model


# A run whose message has not been picked up after this long is sent again by the reaper.
TRAINING_RESEND_AFTER = timedelta(minutes=2)


def _enqueue_training(model_id: int) -> None:
    """The run's row is committed before this is called; if the broker is down, the reaper sends
    the run again once it is back, and the request that asked for the run still succeeds."""
    try:
        train_model.delay(model_id)
    except Exception:
        logger.exception("could not enqueue training run %s; reap_stale_training will send it again", model_id)


def _start_and_enqueue(source: Source, triggered_by: str) -> int | None:
    try:
        return training_request(source=source, triggered_by=triggered_by).pk
    except services.TrainingConflict:
        return None


@shared_task
def retrain_source(source_id: int) -> int | None:
    """A source's own schedule (its django-celery-beat PeriodicTask) fires this."""
    source = Source.objects.filter(pk=source_id).first()
    if source is None:
        return None
    return _start_and_enqueue(source, "schedule")


@shared_task
def retrain_all_sources() -> list[int]:
    """The installation's default schedule, for sources whose admin has not set their own."""
    own_schedule = set(LearningSettings.objects.values_list("source_id", flat=True))
    started = []
    for source in Source.objects.exclude(pk__in=own_schedule):
        pk = _start_and_enqueue(source, "schedule")
        if pk:
            started.append(pk)
    return started


@shared_task
def retrain_if_enough_verdicts(source_id: int) -> int | None:
    source = Source.objects.get(pk=source_id)
    needed = selectors.learning_settings_get(source=source).retrain_after_verdicts
    if needed <= 0:
        return None
    if services.verdicts_since_last_training(source=source) < needed:
        return None
    return _start_and_enqueue(source, f"{needed} new verdicts")


@shared_task
def reap_stale_training() -> int:
    for model_id in selectors.training_runs_waiting(older_than=timezone.now() - TRAINING_RESEND_AFTER):
        _enqueue_training(model_id)
    return services.training_reap_stale()


@shared_task
def verify_model_files() -> list[int]:
    return services.model_files_verify()


@shared_task
def monitor_sources() -> list[int]:
    """Store a monitoring snapshot for every source that has a champion."""
    return monitoring.monitoring_snapshot_all()
