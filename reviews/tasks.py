"""Celery tasks of the review side. Each takes ids, calls one service and is safe to run twice."""

from celery import shared_task
from celery.utils.log import get_task_logger
from django.db import InterfaceError, OperationalError

from reviews import services

logger = get_task_logger(__name__)

# A database restart or failover surfaces as OperationalError (cannot connect, terminated by the
# administrator) or InterfaceError (the connection was closed under us); both are transient, and
# a retried batch re-claims only the events still 'received'.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)


# Retries after 2, 4, 8, ... 64 s (two minutes in all), enough for a restart or a failover;
# without jitter, because full jitter can draw several near-zero waits and spend every retry
# while the database is still down. What outlasts them is left to the sweeper.
@shared_task(bind=True, autoretry_for=DATABASE_UNAVAILABLE, retry_backoff=2, retry_jitter=False, max_retries=6)
def score_events(self, event_ids: list[int]) -> int:
    # Logged before any work, so an operator (and the fault tests) can tell a batch that was
    # running when its worker died from one that was only prefetched.
    logger.info(
        "scoring a batch of %d events, ids %s to %s", len(event_ids), min(event_ids, default=None), max(event_ids, default=None)
    )
    return services.events_score(event_ids=event_ids)


@shared_task(bind=True, autoretry_for=DATABASE_UNAVAILABLE, retry_backoff=2, retry_jitter=False, max_retries=6)
def explain_events(self, event_ids: list[int]) -> int:
    """Explanations of newly queued events, on their own queue so that they never delay scoring."""
    from models_registry.scoring import explain_events as explain

    return explain(event_ids)


@shared_task
def sweep_unscored_events() -> int:
    return services.events_sweep_unscored()


@shared_task
def expire_claims() -> int:
    return services.review_claims_expire()
