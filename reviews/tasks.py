"""Celery tasks of the review side. Each takes ids, calls one service and is safe to run twice."""

from celery import shared_task
from django.db import OperationalError

from reviews import services


@shared_task(bind=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def score_events(self, event_ids: list[int]) -> int:
    return services.events_score(event_ids=event_ids)


@shared_task
def sweep_unscored_events() -> int:
    return services.events_sweep_unscored()


@shared_task
def expire_claims() -> int:
    return services.review_claims_expire()
