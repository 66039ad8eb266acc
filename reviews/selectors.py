"""Reads for the review side: the queue, the next item to hand out, event lookups."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from reviews import roles
from reviews.choices import Action, ItemKind, ReviewState
from reviews.models import Event, ReviewItem, Source, Verdict

QUEUE_ORDER = ("-priority", "created_at", "id")


def sources_reviewable(*, user) -> QuerySet[Source]:
    """The sources whose review items a user may see and decide: all of them for admins, the
    assigned ones for reviewers, none for anyone else."""
    if roles.is_admin(user):
        return Source.objects.all()
    if not roles.is_reviewer(user):
        return Source.objects.none()
    return Source.objects.filter(reviewers=user)


def sources_readable(*, user) -> QuerySet[Source]:
    """The sources whose events a user may read: the ones they review plus, for an API client,
    the ones it submits to."""
    if roles.is_admin(user):
        return Source.objects.all()
    q = Q(pk__in=[])
    if roles.is_reviewer(user):
        q |= Q(reviewers=user)
    if roles.is_api_client(user):
        q |= Q(api_clients=user)
    return Source.objects.filter(q).distinct()


def scoped_to_reviewer(qs: QuerySet, *, viewer, field: str = "source_id") -> QuerySet:
    """qs limited to the rows of sources the viewer reviews; an admin's qs is left as it is.
    A semi-join on the assignment table, so a row never appears twice."""
    if roles.is_admin(viewer):
        return qs
    if not roles.is_reviewer(viewer):
        return qs.none()
    assigned = Source.reviewers.through.objects.filter(user_id=viewer.pk).values("source_id")
    return qs.filter(**{f"{field}__in": assigned})


def review_queue(*, viewer, state: str | None = ReviewState.OPEN, source: Source | None = None) -> QuerySet[ReviewItem]:
    qs = ReviewItem.objects.select_related("event", "source", "claimed_by", "event__model_version").order_by(*QUEUE_ORDER)
    qs = scoped_to_reviewer(qs, viewer=viewer)
    if state == "active":
        qs = qs.filter(state__in=[ReviewState.OPEN, ReviewState.CLAIMED])
    elif state:
        qs = qs.filter(state=state)
    if source is not None:
        qs = qs.filter(source=source)
    return qs


def review_item_current_claim(*, reviewer, source: Source | None = None) -> ReviewItem | None:
    qs = ReviewItem.objects.filter(state=ReviewState.CLAIMED, claimed_by=reviewer, claim_expires_at__gte=timezone.now())
    qs = scoped_to_reviewer(qs, viewer=reviewer)
    if source is not None:
        qs = qs.filter(source=source)
    return qs.order_by(*QUEUE_ORDER).first()


def verdict_last_undoable(*, reviewer) -> Verdict | None:
    """The reviewer's latest verdict still inside the undo window. "Submit and take next" moves
    the reviewer on at once, so the next page offers to undo it."""
    since = timezone.now() - timedelta(seconds=settings.SECAI_UNDO_SECONDS)
    return (
        Verdict.objects.filter(reviewer=reviewer, undone_at__isnull=True, created_at__gte=since)
        .select_related("item__event")
        .order_by("-created_at", "-pk")
        .first()
    )


def review_item_open_for(*, reviewer, source: Source | None = None) -> QuerySet[ReviewItem]:
    """Open items of the reviewer's sources that they may take, in queue order (no locks)."""
    qs = scoped_to_reviewer(ReviewItem.objects.filter(state=ReviewState.OPEN), viewer=reviewer)
    if source is not None:
        qs = qs.filter(source=source)
    # a four-eyes item waiting for its second opinion is not handed back to the first reviewer
    qs = qs.exclude(pk__in=Verdict.objects.filter(reviewer=reviewer, undone_at__isnull=True).values("item_id"))
    return qs.order_by(*QUEUE_ORDER)


def review_item_next_candidates(*, reviewer, source: Source | None = None, skip_locked: bool = True) -> QuerySet[ReviewItem]:
    """Open items of the reviewer's sources in queue order to try to claim. On PostgreSQL the first row no other transaction
    holds is locked and returned alone (locking more would hide rows from concurrent reviewers);
    with skip_locked=False the first row is locked even if that means waiting for its holder.
    Elsewhere a few candidates are returned and the compare-and-set claim picks the first it wins."""
    qs = review_item_open_for(source=source, reviewer=reviewer)
    if connection.features.has_select_for_update_skip_locked:
        return qs.select_for_update(skip_locked=skip_locked)[:1]
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


# ---------------------------------------------------------------- the console's queue


@dataclass(frozen=True)
class QueueFilters:
    """What a reviewer can narrow the queue to. Every field is optional."""

    state: str = "open"  # a ReviewState, "active" (open + claimed) or "all"
    source: str = ""
    action: str = ""
    kind: str = ""
    min_score: float | None = None
    max_score: float | None = None
    entity: str = ""
    model_version: int | None = None
    max_age_hours: float | None = None
    q: str = ""  # entity or external id, exact or prefix

    @classmethod
    def from_query(cls, params) -> QueueFilters:
        def number(name: str, cast=float):
            raw = (params.get(name) or "").strip()
            try:
                value = cast(raw) if raw else None
            except ValueError:
                return None
            if isinstance(value, float) and not math.isfinite(value):
                return None
            return value

        state = params.get("state") or "open"
        if state not in ("active", "all", *ReviewState.values):
            state = "open"
        action = params.get("action") or ""
        kind = params.get("kind") or ""
        return cls(
            state=state,
            source=(params.get("source") or "")[:64],
            action=action if _known_action(action) else "",
            kind=kind if kind in ItemKind.values else "",
            min_score=number("min_score"),
            max_score=number("max_score"),
            entity=(params.get("entity") or "")[:200],
            model_version=number("model_version", int),
            max_age_hours=number("max_age_hours"),
            q=(params.get("q") or "").strip()[:200],
        )

    def fields(self) -> list[tuple[str, object]]:
        """The filters that are set, as (name, value) pairs, for hidden form fields."""
        return [(k, v) for k, v in self.__dict__.items() if v not in ("", None)]

    def as_query(self, **override) -> str:
        values = {**{k: v for k, v in self.__dict__.items()}, **override}
        return urlencode({k: v for k, v in values.items() if v not in ("", None) and not (k == "state" and v == "open")})


def _known_action(name: str) -> bool:
    """A built-in action, or one an admin defined for some source."""
    if not name or name in Action.values:
        return bool(name)
    from actions.models import ActionType

    return ActionType.objects.filter(name=name[:16]).exists()


def review_queue_filtered(*, filters: QueueFilters, viewer, apply_state: bool = True) -> QuerySet[ReviewItem]:
    qs = scoped_to_reviewer(ReviewItem.objects.all(), viewer=viewer)
    if apply_state:
        if filters.state == "active":
            qs = qs.filter(state__in=[ReviewState.OPEN, ReviewState.CLAIMED])
        elif filters.state != "all":
            qs = qs.filter(state=filters.state)
    if filters.source:
        qs = qs.filter(source__name=filters.source)
    if filters.action:
        qs = qs.filter(proposed_action=filters.action)
    if filters.kind:
        qs = qs.filter(kind=filters.kind)
    if filters.min_score is not None:
        qs = qs.filter(score__gte=filters.min_score)
    if filters.max_score is not None:
        qs = qs.filter(score__lte=filters.max_score)
    if filters.entity:
        qs = qs.filter(event__entity=filters.entity)
    if filters.model_version is not None:
        qs = qs.filter(event__model_version__version=filters.model_version)
    if filters.max_age_hours is not None:
        qs = qs.filter(created_at__gte=timezone.now() - timedelta(hours=filters.max_age_hours))
    if filters.q:
        qs = qs.filter(Q(event__entity__startswith=filters.q) | Q(event__external_id__startswith=filters.q))
    return qs


def _encode_cursor(item: ReviewItem) -> str:
    raw = json.dumps([item.priority, item.created_at.isoformat(), item.pk])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[float, datetime, int] | None:
    try:
        priority, created, pk = json.loads(base64.urlsafe_b64decode(cursor.encode()).decode())
        return float(priority), datetime.fromisoformat(created), int(pk)
    except (ValueError, TypeError, UnicodeDecodeError, binascii.Error):
        return None


def review_queue_page(*, filters: QueueFilters, viewer, after: str = "", size: int = 50) -> tuple[list[ReviewItem], str]:
    """One page of the queue in priority order, by keyset: the page after `after` is found by
    an index range scan, so page 1,000 costs what page 1 costs (no OFFSET)."""
    qs = review_queue_filtered(filters=filters, viewer=viewer).select_related(
        "event", "source", "claimed_by", "event__model_version"
    )
    cursor = _decode_cursor(after) if after else None
    if cursor is not None:
        priority, created, pk = cursor
        qs = qs.filter(
            Q(priority__lt=priority)
            | Q(priority=priority, created_at__gt=created)
            | Q(priority=priority, created_at=created, pk__gt=pk)
        )
    rows = list(qs.order_by(*QUEUE_ORDER)[: size + 1])
    next_cursor = _encode_cursor(rows[size - 1]) if len(rows) > size else ""
    return rows[:size], next_cursor


COUNTS_TTL = 10  # seconds the filter bar's counts may be stale


def review_queue_counts(*, filters: QueueFilters, viewer) -> dict[str, dict[str, int]]:
    """Counts for the filter bar: per state (other filters applied) and per proposed action (in the
    selected state), over the sources the viewer reviews. One grouped query, cached for COUNTS_TTL
    seconds per filter and set of sources: counting a hundred thousand open items on every page
    view would cost more than the page itself."""
    scope = "all" if roles.is_admin(viewer) else f"reviewer:{viewer.pk}"  # an assignment change shows within the TTL
    key = "queue-counts:" + hashlib.sha256(repr((sorted(filters.__dict__.items()), scope)).encode()).hexdigest()
    cached = cache.get(key)
    if cached is not None:
        return cached
    grouped = (
        review_queue_filtered(filters=filters, viewer=viewer, apply_state=False)
        .values_list("state", "proposed_action")
        .annotate(n=Count("id"))
        .order_by()
    )
    by_state: dict[str, int] = {}
    by_action: dict[str, int] = {}
    selected = {
        "active": {ReviewState.OPEN, ReviewState.CLAIMED},
        "all": set(ReviewState.values),
    }.get(filters.state, {filters.state})
    for state, action, n in grouped:
        by_state[state] = by_state.get(state, 0) + n
        if state in selected:
            by_action[action] = by_action.get(action, 0) + n
    by_state["active"] = by_state.get(ReviewState.OPEN, 0) + by_state.get(ReviewState.CLAIMED, 0)
    by_state["all"] = sum(v for k, v in by_state.items() if k in ReviewState.values)
    counts = {"state": by_state, "action": by_action}
    cache.set(key, counts, COUNTS_TTL)
    return counts


# ---------------------------------------------------------------- the item page's context


def entity_history(*, event: Event, limit: int = 20) -> list[Event]:
    """The entity's earlier events in the same source, newest first, with their verdicts."""
    return list(
        Event.objects.filter(source_id=event.source_id, entity=event.entity)
        .filter(Q(occurred_at__lt=event.occurred_at) | Q(occurred_at=event.occurred_at, pk__lt=event.pk))
        .select_related("model_version", "label")
        .prefetch_related("review_item__verdicts__reviewer")
        .order_by("-occurred_at", "-id")[:limit]
    )


_SIMILAR_POOL_TTL = 30.0  # seconds a source's pool of decided events is reused
_similar_pools: dict[int, tuple[float, dict]] = {}


def _similar_pool(source: Source, pool: int) -> dict:
    """The most recently decided events of a source as a numeric matrix, cached briefly per
    process: reviewers open item after item, and the pool changes by a few verdicts a minute."""
    cached = _similar_pools.get(source.pk)
    if cached and time.monotonic() - cached[0] < _SIMILAR_POOL_TTL:
        return cached[1]
    rows = list(
        Verdict.objects.filter(item__source_id=source.pk, undone_at__isnull=True)
        .order_by("-created_at")
        .values_list("pk", "item__event_id", "item__event__attributes")[:pool]
    )
    numeric = [k for k, t in source.schema.items() if t in ("numeric", "boolean")]
    categorical = [k for k, t in source.schema.items() if t == "categorical"]
    X = np.array([[_num(attrs.get(k)) for k in numeric] for _, _, attrs in rows], dtype=float).reshape(len(rows), len(numeric))
    X = np.sign(X) * np.log1p(np.abs(X))
    spread = X.std(axis=0) if len(rows) else np.ones(len(numeric))
    spread[spread == 0] = 1.0
    data = {
        "verdict_ids": [r[0] for r in rows],
        "event_ids": np.array([r[1] for r in rows]),
        "X": X,
        "spread": spread,
        "numeric": numeric,
        "categorical": {k: [attrs.get(k) for _, _, attrs in rows] for k in categorical},
    }
    _similar_pools[source.pk] = (time.monotonic(), data)
    return data


def _num(value) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0  # booleans count as 0/1


def similar_decided_events(*, event: Event, limit: int = 5, pool: int = 2000) -> list[tuple[float, Event, Verdict]]:
    """Past verdicts on the events most like this one: nearest neighbours among the source's most
    recently decided events, on the same attributes (numbers log-compressed and scaled by their
    spread in the pool; a categorical mismatch counts as one)."""
    data = _similar_pool(event.source, pool)
    if not data["verdict_ids"]:
        return []
    x = np.array([_num(event.attributes.get(k)) for k in data["numeric"]], dtype=float)
    x = np.sign(x) * np.log1p(np.abs(x))
    distance = (((data["X"] - x) / data["spread"]) ** 2).sum(axis=1)
    for k, values in data["categorical"].items():
        mine = event.attributes.get(k)
        distance += np.fromiter((v != mine for v in values), dtype=float, count=len(values))
    distance[data["event_ids"] == event.pk] = np.inf  # not itself
    best = [i for i in np.argsort(distance, kind="stable")[:limit] if np.isfinite(distance[i])]
    chosen = {data["verdict_ids"][i]: float(np.sqrt(distance[i])) for i in best}
    verdicts = Verdict.objects.filter(pk__in=chosen, undone_at__isnull=True).select_related("item__event", "reviewer")
    out = [(chosen[v.pk], v.item.event, v) for v in verdicts]
    out.sort(key=lambda t: t[0])
    return out


def attribute_signature(attrs: dict, schema: dict[str, str]) -> tuple:
    """A coarse fingerprint: categorical values as they are, numbers on a log scale rounded to one
    decimal. Events with the same fingerprint are near-identical for a reviewer's purposes."""
    parts = []
    for k, t in sorted(schema.items()):
        v = attrs.get(k)
        if t in ("numeric", "boolean") and isinstance(v, (int, float)):
            parts.append((k, round(math.copysign(math.log1p(abs(float(v))), float(v)), 1)))
        elif t == "categorical":
            parts.append((k, v))
    return tuple(parts)


def open_item_clusters(*, filters: QueueFilters, viewer, pool: int = 5000, min_size: int = 2) -> list[dict]:
    """Groups of open items with the same proposed action and attribute fingerprint, largest first,
    so a reviewer can clear many copies of one benign pattern in one decision."""
    items = list(
        review_queue_filtered(filters=QueueFilters(**{**filters.__dict__, "state": ReviewState.OPEN}), viewer=viewer)
        .select_related("event", "source")
        .order_by(*QUEUE_ORDER)[:pool]
    )
    groups: dict[tuple, list[ReviewItem]] = {}
    for item in items:
        key = (item.source_id, item.proposed_action, attribute_signature(item.event.attributes, item.source.schema))
        groups.setdefault(key, []).append(item)
    clusters = []
    for members in groups.values():
        if len(members) < min_size:
            continue
        digest = hashlib.sha256(
            repr(
                (
                    members[0].source_id,
                    members[0].proposed_action,
                    attribute_signature(members[0].event.attributes, members[0].source.schema),
                )
            ).encode()
        ).hexdigest()[:12]
        clusters.append(
            {
                "key": digest,
                "size": len(members),
                "example": members[0],
                "ids": [m.pk for m in members],
                "entities": sorted({m.event.entity for m in members})[:5],
            }
        )
    clusters.sort(key=lambda c: -c["size"])
    return clusters
