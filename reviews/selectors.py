"""Reads for the review side: the queue, the next item to hand out, event lookups."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

import numpy as np
from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from reviews import roles
from reviews.choices import HELD_STATES, Action, ItemKind, ReviewState
from reviews.models import Event, ItemSkip, ReviewItem, Source, Verdict

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
    qs = ReviewItem.objects.filter(state__in=HELD_STATES, claimed_by=reviewer, claim_expires_at__gte=timezone.now())
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


def review_items_free_for(*, reviewer, source: Source | None = None, escalated: bool = False) -> QuerySet[ReviewItem]:
    """Items of the reviewer's sources that claim-next may hand them, in queue order (no locks):
    open items (escalated=False) or escalated items no admin is working on (escalated=True);
    never one the reviewer has given a live verdict on (a four-eyes item waiting for its second
    opinion, an escalation they took part in) or has skipped within SECAI_SKIP_SECONDS."""
    now = timezone.now()
    if escalated:
        qs = ReviewItem.objects.filter(state=ReviewState.ESCALATED).filter(
            Q(claimed_by__isnull=True) | Q(claim_expires_at__lt=now)
        )
    else:
        qs = ReviewItem.objects.filter(state=ReviewState.OPEN)
    qs = scoped_to_reviewer(qs, viewer=reviewer)
    if source is not None:
        qs = qs.filter(source=source)
    # Correlated (NOT EXISTS), so each row the queue order reaches is checked through the unique
    # index on (item, reviewer): written as NOT IN, PostgreSQL hashed every live verdict the
    # reviewer had ever given, and claim-next slowed with each reviewer's history (22 ms at 50,000).
    qs = qs.exclude(Exists(Verdict.objects.filter(item=OuterRef("pk"), reviewer=reviewer, undone_at__isnull=True)))
    qs = qs.exclude(Exists(ItemSkip.objects.filter(item=OuterRef("pk"), reviewer=reviewer, until__gt=now)))
    return qs.order_by(*QUEUE_ORDER)


def review_item_next_candidates(
    *, reviewer, source: Source | None = None, escalated: bool = False, skip_locked: bool = True
) -> QuerySet[ReviewItem]:
    """Items to try to claim, from review_items_free_for. On PostgreSQL the first row no other
    transaction holds is locked and returned alone (locking more would hide rows from concurrent
    reviewers); with skip_locked=False the first row is locked even if that means waiting for its
    holder. Elsewhere a few candidates are returned and the compare-and-set claim picks the first
    it wins."""
    qs = review_items_free_for(reviewer=reviewer, source=source, escalated=escalated)
    if connection.features.has_select_for_update_skip_locked:
        return qs.select_for_update(skip_locked=skip_locked)[:1]
    return qs[:5]


def escalations_waiting_count(*, admin) -> int:
    """Escalated items claim-next would hand this admin: the prompt in the console's header."""
    return review_items_free_for(reviewer=admin, escalated=True).count()


def item_skips_pending(*, reviewer) -> tuple[int, datetime | None]:
    """Open items the reviewer skipped that claim-next holds back from them, and when the first of
    them comes back; for the message when the queue looks empty to them."""
    now = timezone.now()
    states = [ReviewState.OPEN, *([ReviewState.ESCALATED] if roles.is_admin(reviewer) else [])]
    skips = scoped_to_reviewer(
        ItemSkip.objects.filter(reviewer=reviewer, until__gt=now, item__state__in=states),
        viewer=reviewer,
        field="item__source_id",
    )
    return skips.count(), skips.order_by("until").values_list("until", flat=True).first()


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
        def number(name: str, cast=float, lo: float = -MAX_FILTER_NUMBER, hi: float = MAX_FILTER_NUMBER):
            """The parameter as a number within [lo, hi]; anything else (text, NaN, a number the
            database or a timedelta cannot hold) is ignored like an unset filter."""
            raw = (params.get(name) or "").strip()[:40]
            try:
                value = cast(raw) if raw else None
            except (ValueError, OverflowError):
                return None
            if value is None or (isinstance(value, float) and not math.isfinite(value)) or not lo <= value <= hi:
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
            # Scores lie in [0, 1]: a bound outside it is ignored, for either end alike.
            min_score=number("min_score", lo=0, hi=1),
            max_score=number("max_score", lo=0, hi=1),
            entity=(params.get("entity") or "")[:200],
            model_version=number("model_version", int, lo=0, hi=2**31 - 1),
            max_age_hours=number("max_age_hours", lo=0, hi=MAX_AGE_HOURS),
            q=(params.get("q") or "").strip()[:200],
        )

    def fields(self) -> list[tuple[str, object]]:
        """The filters that are set, as (name, value) pairs, for hidden form fields."""
        return [(k, v) for k, v in self.__dict__.items() if v not in ("", None)]

    def as_query(self, **override) -> str:
        values = {**{k: v for k, v in self.__dict__.items()}, **override}
        return urlencode({k: v for k, v in values.items() if v not in ("", None) and not (k == "state" and v == "open")})


def queue_filters_refused(params, filters: QueueFilters) -> dict[str, str]:
    """The parameters given but not usable as filters, with the reason: the console ignores them
    and says so above the queue, the API refuses them with a 400 naming each."""
    refused = {
        name: "must be a number from 0 to 1" if name.endswith("_score") else "must be a number within the allowed range"
        for name in ("min_score", "max_score", "model_version", "max_age_hours")
        if (params.get(name) or "").strip() and getattr(filters, name) is None
    }
    if params.get("action") and not filters.action:
        refused["action"] = "is not an action of any source"
    if params.get("kind") and not filters.kind:
        refused["kind"] = f"must be one of {', '.join(ItemKind.values)}"
    return refused


# Filter bounds: an integer column holds 2**31 - 1; a hundred years is older than any item.
MAX_FILTER_NUMBER = 1e12
MAX_AGE_HOURS = 24 * 366 * 100


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


COUNTS_TTL = 10  # seconds the filter bar's counts may be stale (a verdict makes them stale at once)
COUNTS_GENERATION_KEY = "queue-counts-generation"


def review_queue_counts(*, filters: QueueFilters, viewer) -> dict[str, dict[str, int]]:
    """Counts for the filter bar: per state (other filters applied) and per proposed action (in the
    selected state), over the sources the viewer reviews. One grouped query, cached for COUNTS_TTL
    seconds per filter and set of sources: counting a hundred thousand open items on every page
    view would cost more than the page itself."""
    scope = "all" if roles.is_admin(viewer) else f"reviewer:{viewer.pk}"  # an assignment change shows within the TTL
    cache = caches["shared"]  # every web process sees one generation (Redis at CACHE_URL in production)
    generation = cache.get(COUNTS_GENERATION_KEY, 0)
    key = "queue-counts:" + hashlib.sha256(repr((sorted(filters.__dict__.items()), scope, generation)).encode()).hexdigest()
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


def verdicts_blind(*, item_state: str, viewer) -> bool:
    """Whether other reviewers' verdicts on an item in this state are hidden from viewer.

    A second opinion is worth something only if it is formed without knowing the first, so until
    an item is decided or escalated a reviewer sees only their own verdicts on it (including
    undone ones: an undone verdict is an opinion too). Admins see everything."""
    return item_state not in (ReviewState.DECIDED, ReviewState.ESCALATED) and not roles.is_admin(viewer)


def verdict_hidden(*, verdict: Verdict, item_state: str, viewer) -> bool:
    """Whether viewer may not read this verdict on an item in this state: another reviewer's
    verdict while verdicts_blind holds."""
    return verdict.reviewer_id != viewer.pk and verdicts_blind(item_state=item_state, viewer=viewer)


def verdicts_visible(*, verdicts: list[Verdict], item_state: str, viewer) -> tuple[list[Verdict], int]:
    """(the verdicts viewer may read, how many others are hidden from them)."""
    shown = [v for v in verdicts if not verdict_hidden(verdict=v, item_state=item_state, viewer=viewer)]
    return shown, len(verdicts) - len(shown)


def entity_history(*, event: Event, viewer, limit: int = 20) -> list[Event]:
    """The entity's earlier events in the same source, newest first, with the live verdicts the
    viewer may read (`shown_verdicts`) and how many are hidden (`hidden_verdicts`)."""
    history = list(
        Event.objects.filter(source_id=event.source_id, entity=event.entity)
        .filter(Q(occurred_at__lt=event.occurred_at) | Q(occurred_at=event.occurred_at, pk__lt=event.pk))
        .select_related("model_version", "label")
        .prefetch_related("review_item__verdicts__reviewer")
        .order_by("-occurred_at", "-id")[:limit]
    )
    for past in history:
        item = getattr(past, "review_item", None)
        live = [v for v in item.verdicts.all() if v.undone_at is None] if item is not None else []
        past.shown_verdicts, past.hidden_verdicts = verdicts_visible(
            verdicts=live, item_state=item.state if item is not None else "", viewer=viewer
        )
    return history


_SIMILAR_POOL_TTL = 300.0  # seconds before a source's pool is rebuilt rather than extended
_similar_pools: dict[int, tuple[float, dict]] = {}


def _pool_rows(source: Source, *, after_pk: int = 0, limit: int) -> list[tuple[int, int, dict]]:
    """(verdict id, event id, attributes) of live verdicts on decided items of a source: newest
    first, or, with after_pk, those given since that verdict. Only decided items: a first opinion
    on a four-eyes item is hidden from the reviewers who may give the second."""
    qs = Verdict.objects.filter(item__source_id=source.pk, undone_at__isnull=True, item__state=ReviewState.DECIDED)
    if after_pk:
        qs = qs.filter(pk__gt=after_pk)
    return list(qs.order_by("-pk").values_list("pk", "item__event_id", "item__event__attributes")[:limit])


def _log_scale(values) -> np.ndarray:
    x = np.array(values, dtype=float)
    return np.sign(x) * np.log1p(np.abs(x))


def _numeric(value) -> float:
    # booleans count as 0/1; a missing value stays missing rather than becoming 0
    return float(value) if isinstance(value, (int, float)) else math.nan


def _pool_extend(data: dict, rows: list[tuple[int, int, dict]]) -> dict:
    numeric, categorical = data["numeric"], data["categorical"]
    X = np.vstack(
        [
            data["X"],
            _log_scale([[_numeric(attrs.get(k)) for k in numeric] for _, _, attrs in rows]).reshape(len(rows), len(numeric)),
        ]
    )
    C = np.empty((len(rows), len(categorical)), dtype=object)
    for i, (_, _, attrs) in enumerate(rows):
        C[i, :] = [attrs.get(k) for k in categorical]
    return {
        **data,
        "verdict_ids": data["verdict_ids"] + [r[0] for r in rows],
        "event_ids": np.concatenate([data["event_ids"], np.array([r[1] for r in rows], dtype=np.int64)]),
        "X": X,
        "range": _column_range(X),
        "C": np.vstack([data["C"], C]),
        "max_pk": max([data["max_pk"], *(r[0] for r in rows)]),
    }


def _column_range(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column (lowest, highest) value, ignoring missing ones; NaN for an all-missing column."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column has no range
        return np.nanmin(X, axis=0, initial=np.inf), np.nanmax(X, axis=0, initial=-np.inf)


def _similar_pool(source: Source, pool: int) -> dict:
    """The source's most recently decided events as a matrix, kept per process: reviewers open
    item after item and rebuilding it costs a few thousand rows. Each use adds the verdicts given
    since, so a verdict given a moment ago counts at once; a full rebuild every few minutes drops
    undone verdicts (which are also filtered out when the rows are shown)."""
    cached = _similar_pools.get(source.pk)
    if cached and time.monotonic() - cached[0] < _SIMILAR_POOL_TTL and len(cached[1]["verdict_ids"]) < 2 * pool:
        built, data = cached
        new = _pool_rows(source, after_pk=data["max_pk"], limit=pool)
        if new:
            data = _pool_extend(data, new)
            _similar_pools[source.pk] = (built, data)
        return data
    numeric = [k for k, t in source.schema.items() if t in ("numeric", "boolean")]
    empty = {
        "numeric": numeric,
        "categorical": [k for k, t in source.schema.items() if t == "categorical"],
        "verdict_ids": [],
        "event_ids": np.array([], dtype=np.int64),
        "X": np.empty((0, len(numeric))),
        "C": np.empty((0, len([k for k, t in source.schema.items() if t == "categorical"])), dtype=object),
        "max_pk": 0,
    }
    data = _pool_extend(empty, _pool_rows(source, limit=pool))
    _similar_pools[source.pk] = (time.monotonic(), data)
    return data


@dataclass(frozen=True)
class SimilarVerdict:
    similarity: float  # 0 (nothing alike) to 1 (every compared attribute equal)
    equal: int  # attributes with exactly this event's value
    compared: int  # attributes compared (numbers, booleans, categories; free text is not)
    event: Event
    verdict: Verdict

    @property
    def percent(self) -> int:
        # rounded down, so that 100% always means every compared attribute is equal
        return math.floor(self.similarity * 100 + 1e-9)


def attribute_similarity(
    x_num: np.ndarray, X: np.ndarray, x_cat: list, C: np.ndarray, pool_range: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gower's similarity of one event to each row of a pool, and how many attributes are equal.

    Each attribute scores 1 when equal and 0 when as far apart as any two values in the pool and
    the event; numbers are compared on a log scale (a byte count of 1,000 is near 1,200, far from
    1); a category scores 1 or 0; a missing value matches only a missing value. The similarity is
    the mean over attributes, so it reads as a share and does not grow with the size of the pool.
    pool_range is _column_range(X), when the caller keeps it."""
    n = X.shape[0]
    if X.shape[1]:
        lo, hi = pool_range if pool_range is not None else _column_range(X)
        spread = np.fmax(hi, x_num) - np.fmin(lo, x_num)  # fmax/fmin skip a missing value
        spread = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
        diff = np.abs(X - x_num) / spread
        missing_x, missing_pool = np.isnan(x_num)[None, :], np.isnan(X)
        num_sim = np.where(missing_x & missing_pool, 1.0, np.where(missing_x | missing_pool, 0.0, 1.0 - np.nan_to_num(diff)))
        total = np.clip(num_sim, 0.0, 1.0).sum(axis=1)
        equal = ((X == x_num) | (missing_x & missing_pool)).sum(axis=1)
    else:
        total, equal = np.zeros(n), np.zeros(n, dtype=int)
    if x_cat:
        mine = np.empty(len(x_cat), dtype=object)
        mine[:] = x_cat
        same = (np.asarray(C, dtype=object).reshape(n, len(x_cat)) == mine).sum(axis=1)
        total = total + same
        equal = equal + same.astype(int)
    compared = X.shape[1] + len(x_cat)
    return (total / compared if compared else np.zeros(n)), equal


def similar_decided_events(*, event: Event, limit: int = 5, pool: int = 2000) -> list[SimilarVerdict]:
    """Verdicts on the decided events most like this one, among the source's most recently decided
    (attribute_similarity), most similar first."""
    data = _similar_pool(event.source, pool)
    compared = len(data["numeric"]) + len(data["categorical"])
    if not data["verdict_ids"] or not compared:
        return []
    x_num = _log_scale([_numeric(event.attributes.get(k)) for k in data["numeric"]])
    x_cat = [event.attributes.get(k) for k in data["categorical"]]
    similarity, equal = attribute_similarity(x_num, data["X"], x_cat, data["C"], data["range"])
    similarity[data["event_ids"] == event.pk] = -1.0  # not itself
    # Most similar first; among equals the most recent verdict (larger id) first. A few spare rows
    # stand in for verdicts undone since the pool was built.
    order = np.lexsort((-np.array(data["verdict_ids"]), -similarity))
    best = [i for i in order[: limit * 2] if similarity[i] >= 0]
    chosen = {data["verdict_ids"][i]: i for i in best}
    verdicts = Verdict.objects.filter(pk__in=chosen, undone_at__isnull=True, item__state=ReviewState.DECIDED).select_related(
        "item__event", "reviewer"
    )
    out = [SimilarVerdict(float(similarity[chosen[v.pk]]), int(equal[chosen[v.pk]]), compared, v.item.event, v) for v in verdicts]
    out.sort(key=lambda s: (-s.similarity, -s.verdict.pk))
    return out[:limit]


def attribute_signature(attrs: dict, schema: dict[str, str]) -> tuple:
    """A coarse fingerprint: categorical values as they are, numbers on a log scale rounded to one
    decimal. Events with the same fingerprint are near-identical for a reviewer's purposes."""
    return _signature(attrs, _signature_fields(schema))


def _signature_fields(schema: dict[str, str]) -> list[tuple[str, bool]]:
    """(attribute, is a number) for the attributes a fingerprint covers, in a fixed order."""
    return [(k, t in ("numeric", "boolean")) for k, t in sorted(schema.items()) if t in ("numeric", "boolean", "categorical")]


def _signature(attrs: dict, fields: list[tuple[str, bool]]) -> tuple:
    parts = []
    for k, numeric in fields:
        v = attrs.get(k)
        if not numeric:
            parts.append((k, v))
        elif isinstance(v, (int, float)):
            parts.append((k, round(math.copysign(math.log1p(abs(v)), v), 1)))
    return tuple(parts)


CLUSTER_DEFINING_SHOWN = 6  # attribute values shown per group; the rest are one click away


def open_item_clusters(*, filters: QueueFilters, viewer, pool: int = 5000, min_size: int = 2) -> list[dict]:
    """Groups of open items with the same proposed action and attribute fingerprint, largest first,
    so a reviewer can clear many copies of one benign pattern in one decision.

    Each group says what defines it: its attribute values (ranges for numbers), ordered so that
    the values fewest other groups share come first, since those tell the groups apart; then its
    score range and its entities. The pool is read as plain rows: model instances for five
    thousand items and their events cost more than the grouping."""
    rows = list(
        review_queue_filtered(filters=QueueFilters(**{**filters.__dict__, "state": ReviewState.OPEN}), viewer=viewer)
        .order_by(*QUEUE_ORDER)
        .values_list("pk", "source_id", "proposed_action", "score", "event__entity", "event__attributes")[:pool]
    )
    fields = {pk: _signature_fields(schema) for pk, schema in Source.objects.values_list("pk", "schema")}
    groups: dict[tuple, list[tuple]] = {}
    for row in rows:
        _pk, source_id, action, _score, _entity, attrs = row
        groups.setdefault((source_id, action, _signature(attrs, fields[source_id])), []).append(row)
    kept = [(key, members) for key, members in groups.items() if len(members) >= min_size]
    # How many groups share each (source, attribute, fingerprint value): a value every group has
    # does not tell this group from the others.
    sharing: dict[tuple, int] = {}
    per_source: dict[int, int] = {}
    for (source_id, _action, signature), _members in kept:
        per_source[source_id] = per_source.get(source_id, 0) + 1
        for part in signature:
            sharing[(source_id, *part)] = sharing.get((source_id, *part), 0) + 1
    examples = ReviewItem.objects.in_bulk([members[0][0] for _key, members in kept])
    names = dict(Source.objects.filter(pk__in=per_source).values_list("pk", "name"))
    clusters = []
    for (source_id, action, signature), members in kept:
        attributes = []
        for name, value in signature:
            shown = _value_range([m[5].get(name) for m in members])
            share = sharing[(source_id, name, value)] / per_source[source_id]
            attributes.append({"name": name, "value": shown, "share": share, "blank": value in (0, 0.0, None, "", False)})
        attributes.sort(key=lambda a: (a["share"], a["blank"], a["name"]))
        scores = [m[3] for m in members]
        entities = sorted({m[4] for m in members})
        clusters.append(
            {
                "key": hashlib.sha256(repr((source_id, action, signature)).encode()).hexdigest()[:12],
                "size": len(members),
                "example": examples[members[0][0]],
                "ids": [m[0] for m in members],
                "source": names[source_id],
                "entities": entities[:5],
                "entity_count": len(entities),
                "score_min": min(scores),
                "score_max": max(scores),
                "defining": attributes[:CLUSTER_DEFINING_SHOWN],
                "more": attributes[CLUSTER_DEFINING_SHOWN:],
            }
        )
    clusters.sort(key=lambda c: -c["size"])
    return clusters


def _value_range(values: list) -> str:
    """The values of one attribute across a group, as text: the value, or min–max for numbers."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if numbers and len(numbers) == len(values):
        lo, hi = min(numbers), max(numbers)
        return f"{lo:g}" if lo == hi else f"{lo:g}–{hi:g}"
    distinct = sorted({"missing" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for v in values})
    return " / ".join(distinct)
