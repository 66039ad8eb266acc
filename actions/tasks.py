"""Celery tasks of the `actions` queue. Each takes ids and calls one service; a duplicated or
redelivered message sends nothing twice because every delivery is claimed by compare-and-set."""

from celery import shared_task
from django.db import OperationalError

from actions import services


@shared_task(bind=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def deliver(self, delivery_ids: list[int]) -> dict[str, int]:
    return services.deliveries_attempt(delivery_ids=delivery_ids)


@shared_task
def sweep_deliveries() -> int:
    return services.deliveries_sweep()


@shared_task
def apply_deadlines() -> int:
    return services.deadlines_apply()
