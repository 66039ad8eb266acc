"""Celery tasks of the model side (the "training" queue)."""

import logging

from celery import shared_task
from django.conf import settings

from models_registry import services
from models_registry.models import ModelVersion
from reviews.models import Source

logger = logging.getLogger(__name__)


@shared_task
def train_model(model_version_id: int) -> str:
    model = ModelVersion.objects.select_related("source").get(pk=model_version_id)
    if model.started_at is not None:
        return model.status  # a redelivered message: this run has been (or is being) handled
    return services.model_train(model=model).status


def _start_and_enqueue(source: Source, triggered_by: str) -> int | None:
    try:
        model = services.training_start(source=source, triggered_by=triggered_by)
    except services.TrainingConflict:
        return None
    train_model.delay(model.pk)
    return model.pk


@shared_task
def retrain_all_sources() -> list[int]:
    started = []
    for source in Source.objects.all():
        pk = _start_and_enqueue(source, "schedule")
        if pk:
            started.append(pk)
    return started


@shared_task
def retrain_if_enough_verdicts(source_id: int) -> int | None:
    needed = settings.SECAI_RETRAIN_AFTER_VERDICTS
    if needed <= 0:
        return None
    source = Source.objects.get(pk=source_id)
    if services.verdicts_since_last_training(source=source) < needed:
        return None
    return _start_and_enqueue(source, f"{needed} new verdicts")


@shared_task
def reap_stale_training() -> int:
    return services.training_reap_stale()
