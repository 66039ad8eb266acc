"""Reads for the review side: the queue, the next item to hand out, event lookups."""

from __future__ import annotations

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from reviews.choices import ReviewState
from reviews.models import Event, ReviewItem, Source

QUEUE_ORDER = ("-priority", "created_at", "id")


def review_queue(*, state: str | None = ReviewState.OPEN, source: Source | None = None) -> QuerySet[ReviewItem]:
    qs = ReviewItem.objects.select_related("event", "source", "claimed_by", "event__model_version").order_by(*QUEUE_ORDER)
    if state == "active":
        qs = qs.filter(state__in=[ReviewState.OPEN, ReviewState.CLAIMED])
    elif state:
        qs = qs.filter(state=state)
    if source is not None:
        qs = qs.filter(source=source)
    return qs


def review_item_current_claim(*, reviewer, source: Source | None = None) -> ReviewItem | None:
    qs = ReviewItem.objects.filter(state=ReviewState.CLAIMED, claimed_by=reviewer, claim_expires_at__gte=timezone.now())
    if source is not None:
        qs = qs.filter(source=source)
    return qs.order_by(*QUEUE_ORDER).first()


def review_item_next_candidates(*, source: Source | None = None) -> QuerySet[ReviewItem]:
    """Open items in queue order to try to claim. On PostgreSQL the first row no other transaction
    holds is locked and returned alone (locking more would hide rows from concurrent reviewers);
    elsewhere a few candidates are returned and the compare-and-set claim picks the first it wins."""
    qs = ReviewItem.objects.filter(state=ReviewState.OPEN)
    if source is not None:
        qs = qs.filter(source=source)
    qs = qs.order_by(*QUEUE_ORDER)
    if connection.features.has_select_for_update_skip_locked:
        return qs.select_for_update(skip_locked=True)[:1]
    return qs[:5]


def review_item_detail(*, pk: int) -> ReviewItem:
    return ReviewItem.objects.select_related("event", "event__source", "event__model_version", "claimed_by", "source").get(pk=pk)


def event_list(*, source: str | None = None, status: str | None = None, entity: str | None = None) -> QuerySet[Event]:
    qs = Event.objects.select_related("source", "model_version", "review_item").order_by("-id")
    if source:
        qs = qs.filter(source__name=source)
    if status:
        qs = qs.filter(status=status)
    if entity:
        qs = qs.filter(entity=entity)
    return qs
