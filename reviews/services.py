"""Writes for the review side: ingesting events, scoring them, claiming and deciding review items."""

from __future__ import annotations

import enum
import logging
import random
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from django.conf import settings
from django.core.cache import caches
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Count, F, IntegerField, Q, Value, When
from django.utils import timezone

from reviews import roles
from reviews.audit import audit_record
from reviews.choices import (
    ACTION_SEVERITY,
    HELD_STATES,
    Action,
    EventStatus,
    ItemKind,
    LabelOrigin,
    ReasonApplies,
    ReviewState,
    VerdictChoice,
)
from reviews.models import Event, ItemSkip, Label, Policy, ReasonCode, ReviewItem, Source, Verdict
from reviews.validation import CleanEvent, FieldError, validate_batch

logger = logging.getLogger(__name__)
_rng = random.SystemRandom()


class ServiceError(Exception):
    """A request that is well-formed but cannot be carried out in the current state."""

    status_code = 400

    def __init__(self, message: str, field: str = "non_field_errors"):
        super().__init__(message)
        self.message = message
        self.field = field


class ItemConflict(ServiceError):
    status_code = 409


class ItemNotFound(ServiceError):
    """The item does not exist or belongs to a source the reviewer is not assigned to: the same
    answer for both, so a reviewer cannot probe other sources' items."""

    status_code = 404


def _require_reviewable(item: ReviewItem, reviewer) -> None:
    if not roles.may_review(reviewer, item.source_id):
        raise ItemNotFound("No such review item.", field="item")


class BatchInvalid(Exception):
    def __init__(self, errors: list[FieldError]):
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors


# ---------------------------------------------------------------- sources


def source_create(
    *, name: str, schema: dict[str, str], description: str = "", reviewers: list | None = None, actor=None
) -> Source:
    with transaction.atomic():
        source = Source(name=name, schema=schema, description=description)
        source.full_clean()
        source.save()
        Policy.objects.create(source=source)
        after: dict[str, Any] = {"name": name, "schema": schema}
        if reviewers:
            source.reviewers.set(reviewers)
            after["reviewers"] = sorted(u.get_username() for u in reviewers)
        from actions.services import action_types_seed

        action_types_seed(source=source)
        audit_record(actor=actor, verb="source.create", obj=source, after=after)
    return source


def policy_update(*, policy: Policy, actor, **changes: Any) -> Policy:
    with transaction.atomic():
        policy = Policy.objects.select_for_update().get(pk=policy.pk)
        fields = ("thresholds", "review_threshold", "audit_sample_rate", "four_eyes_actions")
        before = {f: getattr(policy, f) for f in fields}
        for key, value in changes.items():
            setattr(policy, key, value)
        policy.save()
        after = {f: getattr(policy, f) for f in fields}
        if after != before:
            audit_record(actor=actor, verb="policy.update", obj=policy, before=before, after=after)
    return policy


def login_lockouts_clear(*, attempt_ids: list[int], actor) -> int:
    """Unlock username/address pairs that django-axes locked after failed logins (its attempt rows
    are the lock). Each unlock is on the audit trail."""
    from axes.models import AccessAttempt

    with transaction.atomic():
        attempts = list(AccessAttempt.objects.select_for_update().filter(pk__in=attempt_ids))
        for attempt in attempts:
            audit_record(
                actor=actor,
                verb="login.unlock",
                obj=attempt,
                before={"username": attempt.username, "ip_address": attempt.ip_address, "failures": attempt.failures_since_start},
            )
        AccessAttempt.objects.filter(pk__in=[a.pk for a in attempts]).delete()
    return len(attempts)


# ---------------------------------------------------------------- ingestion


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


def events_ingest(
    *, source: Source, rows: list[Any], status: str = EventStatus.RECEIVED, labels: list[bool] | None = None
) -> IngestResult:
    """Validate and store a batch. All or nothing: any invalid row refuses the whole batch.

    Rows whose (source, external_id) is already stored are reported as duplicates and not stored
    again. Scoring is enqueued only after commit, so a worker never looks for a row that a
    rolled-back transaction never wrote.
    """
    clean, errors = validate_batch(rows, source.schema)
    if errors:
        raise BatchInvalid(errors)
    return _events_store(source=source, clean=clean, status=status, labels=labels)


def _events_store(*, source: Source, clean: list[CleanEvent], status: str, labels: list[bool] | None) -> IngestResult:
    result = IngestResult()
    ids = [e.external_id for e in clean]
    with transaction.atomic():
        existing: dict[str, tuple[int, str]] = {}
        if connection.vendor != "postgresql":
            # PostgreSQL's INSERT ... ON CONFLICT reports what it skipped; elsewhere, look first.
            existing.update(_events_by_external_id(source, ids))
        new = [e for e in clean if e.external_id not in existing]
        new_ids = _events_insert(source=source, events=new, status=status)
        # Rows the insert skipped were stored before (or by a concurrent request between a check
        # and the insert): they are duplicates, reported with the id and status they have.
        existing.update(_events_by_external_id(source, [e.external_id for e in new if e.external_id not in new_ids]))
        new_external = [e.external_id for e in new if e.external_id in new_ids]
        if labels is not None:
            label_of = dict(zip(ids, labels, strict=True))
            Label.objects.bulk_create(
                [Label(event_id=new_ids[ext], is_threat=label_of[ext], origin=LabelOrigin.IMPORT) for ext in new_external],
                batch_size=1000,
                ignore_conflicts=True,
            )
        for e in clean:
            if e.external_id in existing:
                pk, st = existing[e.external_id]
                result.duplicates += 1
                result.events.append({"id": pk, "external_id": e.external_id, "status": st, "duplicate": True})
            else:
                result.accepted += 1
                result.events.append({"id": new_ids[e.external_id], "external_id": e.external_id, "status": status})
        if status == EventStatus.RECEIVED:
            to_score = [new_ids[x] for x in new_external]
            transaction.on_commit(lambda: enqueue_scoring(to_score))
    return result


def _events_insert(*, source: Source, events: list[CleanEvent], status: str) -> dict[str, int]:
    """Insert events, skipping any (source, external_id) already stored; return external_id -> id
    of the rows this call inserted.

    On PostgreSQL the rows are COPYed into a temporary table and moved with one
    INSERT ... ON CONFLICT DO NOTHING RETURNING, which tells exactly which rows this transaction
    stored; COPY avoids the per-value escaping that made a 1,000-row ORM insert cost 300 ms.
    """
    if not events:
        return {}
    if connection.vendor == "postgresql":
        table = Event._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS secai_ingest (external_id text, entity text, occurred_at timestamptz, attributes jsonb) ON COMMIT DELETE ROWS"
            )
            with cursor.copy("COPY secai_ingest (external_id, entity, occurred_at, attributes) FROM STDIN") as copy:
                encode = _json_encoder.encode  # validated attributes: strings, finite numbers, booleans, nulls
                for e in events:
                    copy.write_row((e.external_id, e.entity, e.occurred_at, encode(e.attributes).decode()))
            cursor.execute(
                f"""
                INSERT INTO {table} (source_id, external_id, entity, occurred_at, received_at, attributes, status, proposed_action)
                SELECT %s, external_id, entity, occurred_at, now(), attributes, %s, '' FROM secai_ingest
                ON CONFLICT (source_id, external_id) DO NOTHING
                RETURNING external_id, id
                """,
                [source.pk, status],
            )
            inserted = dict(cursor.fetchall())
            cursor.execute("TRUNCATE secai_ingest")
        return inserted
    # SQLite: the transaction took the write lock up front (IMMEDIATE), so no other writer can
    # have inserted these external_ids since the caller checked.
    Event.objects.bulk_create(
        [
            Event(
                source=source,
                external_id=e.external_id,
                entity=e.entity,
                occurred_at=e.occurred_at,
                attributes=e.attributes,
                status=status,
            )
            for e in events
        ],
        batch_size=1000,
        ignore_conflicts=True,
    )
    return {ext: pk for ext, (pk, _status) in _events_by_external_id(source, [e.external_id for e in events]).items()}


def _events_by_external_id(source: Source, external_ids: list[str]) -> dict[str, tuple[int, str]]:
    """external_id -> (id, status) of the stored events among external_ids, queried in chunks that
    stay under SQLite's bound-parameter limit."""
    found: dict[str, tuple[int, str]] = {}
    for start in range(0, len(external_ids), 900):
        chunk = external_ids[start : start + 900]
        for pk, ext, st in Event.objects.filter(source=source, external_id__in=chunk).values_list("id", "external_id", "status"):
            found[ext] = (pk, st)
    return found


def enqueue_scoring(event_ids: list[int]) -> None:
    """Send ids to the scoring queue in batches. If the broker is down the events stay 'received'
    in the database, and the sweeper enqueues them once it is back."""
    from reviews.tasks import score_events

    size = settings.SECAI_SCORE_BATCH
    for start in range(0, len(event_ids), size):
        try:
            score_events.delay(event_ids[start : start + size])
        except Exception:  # broker unreachable: the sweeper will pick these up
            logger.exception(
                "could not enqueue %d events for scoring; the sweeper will retry", len(event_ids[start : start + size])
            )
            return


def explanation_ensure(event: Event) -> None:
    """Give a scored event its explanation now if the explain queue has not reached it yet (a
    reviewer opened its item within seconds of scoring, or the message was lost)."""
    from models_registry.scoring import explain_events

    if event.explanation is None and event.score is not None and event.model_version_id is not None:
        if explain_events([event.pk]):
            event.refresh_from_db(fields=["explanation"])


def enqueue_explanations(event_ids: list[int]) -> None:
    """Ask the explain queue for the explanations of newly queued events. A lost message costs
    nothing but time: the item page explains an unexplained event when it is opened."""
    from reviews.tasks import explain_events

    try:
        explain_events.delay(event_ids)
    except Exception:
        logger.exception("could not enqueue explanations of %d events; the item page will compute them", len(event_ids))


def events_sweep_unscored(*, older_than_seconds: int | None = None, limit: int = 20_000) -> int:
    """Re-enqueue events left 'received' (a lost message, a broker outage, no model yet)."""
    age = settings.SECAI_SWEEP_AFTER_SECONDS if older_than_seconds is None else older_than_seconds
    cutoff = timezone.now() - timedelta(seconds=age)
    ids = list(
        Event.objects.filter(status=EventStatus.RECEIVED, received_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    if ids:
        enqueue_scoring(ids)
    return len(ids)


# ---------------------------------------------------------------- scoring


def priority_for(action: str, score: float, severities: dict[str, int] | None = None) -> float:
    """Higher first: action severity dominates, the score orders within one action."""
    return (severities if severities is not None else ACTION_SEVERITY).get(action, 0) + float(score)


def events_score(*, event_ids: list[int]) -> int:
    """Score the events among event_ids that are still 'received'; return how many this call scored.

    Idempotent: the write is a compare-and-set. On PostgreSQL the model runs outside any
    transaction, and one UPDATE writes the scores only of rows still 'received', returning those
    it changed; review items are made for those alone, in the same transaction (a second worker
    given the same ids waits for the first's row locks, then finds nothing to change). SQLite
    serialises writers, so there the whole batch runs in one IMMEDIATE transaction. Either way a
    duplicate delivery, or a redelivery after a worker died mid-batch, writes each score exactly
    once and never queues an event twice.
    """
    if not event_ids:
        return 0
    if connection.vendor == "postgresql":
        return _events_score(event_ids)
    with transaction.atomic():
        return _events_score(event_ids)


# msgspec's JSON codec: a quarter of the time of the json module on a batch's attributes.
_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()


@contextmanager
def _bound_cursor():
    """A PostgreSQL cursor that sends parameters apart from the statement (server-side binding).
    Django's psycopg cursors bind on the client, quoting every element of an array parameter in
    Python, which was a seventh of a scoring batch's time with the batch's arrays. Same
    connection and transaction; errors translated to Django's as by its own cursors.

    Array parameters go as %b (binary): psycopg packs a list of numbers, strings or times in
    binary a third of the time it takes to quote it as text, which was a tenth of a batch."""
    import psycopg

    connection.close_if_health_check_failed()  # a worker's connection kept from an earlier task
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor


# The batch's rows are found by their ids alone; whether each is still 'received' is checked on the
# row. Written as "status = %s", the test let the planner read the status indexes: every event
# ever received leaves an entry there until vacuum removes it, and with statistics a vacuum behind
# (or autovacuum off) the planner took them for a handful of rows and read every page they pointed
# to. On a table of 300,000 events that made one batch's UPDATE 200 ms instead of 30, and the cost
# grew with the table. IS NOT DISTINCT FROM means the same on this NOT NULL column and no index
# serves it, so each plan is the primary key's.
_STATUS_UNINDEXED = "{alias}.status IS NOT DISTINCT FROM %s"
_EVENTS = Event._meta.db_table
# (event ids, 'received'): the batch's rows still to score.
PENDING_SQL = (
    f"SELECT id, source_id, entity, attributes::text FROM {_EVENTS} "
    f"WHERE id = ANY(%b::bigint[]) AND {_STATUS_UNINDEXED.format(alias=_EVENTS)} ORDER BY id"
)
# (model version, scored at, ids, scores, statuses, actions, 'received'): the compare-and-set.
WRITE_SCORES_SQL = f"""
    UPDATE {_EVENTS} AS e
       SET score = v.score, status = v.status, proposed_action = v.action,
           model_version_id = %s, scored_at = %s
      FROM unnest(%b::bigint[], %b::float8[], %b::text[], %b::text[]) AS v(id, score, status, action)
     WHERE e.id = v.id AND {_STATUS_UNINDEXED.format(alias="e")}
 RETURNING e.id
"""


def _events_pending(event_ids: list[int]) -> list[dict]:
    """The events among event_ids still 'received', oldest first."""
    if connection.vendor == "postgresql":
        # One array parameter rather than a thousand placeholders, and the attributes as text
        # decoded here: the ORM's per-value converters cost more than the query itself. The
        # status test is written so that no index can serve it (see _STATUS_UNINDEXED).
        with _bound_cursor() as cursor:
            cursor.execute(PENDING_SQL, [list(event_ids), EventStatus.RECEIVED.value])
            loads = _json_decoder.decode
            return [{"id": i, "source_id": s, "entity": e, "attributes": loads(a)} for i, s, e, a in cursor.fetchall()]
    return list(
        Event.objects.filter(id__in=event_ids, status=EventStatus.RECEIVED)
        .order_by("id")
        .values("id", "source_id", "attributes", "entity")
    )


def _events_score(event_ids: list[int]) -> int:
    from actions import selectors as action_selectors
    from actions.choices import Mode
    from actions.services import items_opened
    from models_registry.scoring import score_rows

    pending = _events_pending(event_ids)
    by_source: dict[int, list[dict]] = {}
    for row in pending:
        by_source.setdefault(row["source_id"], []).append(row)
    scored = 0
    for source_id, group in by_source.items():
        policy = Policy.objects.get(source_id=source_id)
        outcome = score_rows(source_id=source_id, rows=[r["attributes"] for r in group], policy=policy)
        if outcome is None:
            continue  # no usable model yet: the events stay 'received' for the sweeper
        types = action_selectors.action_types_of(source_id=source_id)
        severities = {name: t.severity for name, t in types.items()}
        listed = action_selectors.entities_listed(source_id=source_id, entities={r["entity"] for r in group})
        allowed, blocked_of = listed["allow"], listed["block"]
        propose_only = action_selectors.source_propose_only(source_id=source_id)
        four_eyes = set(policy.four_eyes_actions or [])
        audit_rate = policy.audit_sample_rate
        scores = outcome.scores.tolist()
        now = timezone.now()
        written: list[tuple[int, float, str, str]] = []  # (event id, score, status, action)
        items: list[dict] = []
        for i, row in enumerate(group):
            event_id, entity = row["id"], row["entity"]
            score, action, flagged = scores[i], outcome.actions[i], outcome.flagged[i]
            blocked = blocked_of.get(entity)
            if entity in allowed:
                # Never actioned: scored and kept, not queued, though it may still be audit-sampled.
                flagged = False
            elif blocked is not None:
                # A block-list entry sends every event of the entity to review, proposing at
                # least the entry's action; the action's mode decides what runs.
                flagged = True
                if severities.get(blocked.action, 0) > severities.get(action, 0):
                    action = blocked.action
            # A random share of the events below the threshold goes to reviewers too: their
            # verdicts estimate the threats the model misses, which flagged items never show.
            audit = not flagged and audit_rate > 0 and _rng.random() < audit_rate
            if not flagged:
                # Not flagged (below the review threshold, or an allow-listed entity): no action is
                # proposed, for the cleared event as for an audit sample.
                action = Action.ALLOW.value
            queued = flagged or audit
            written.append((event_id, score, EventStatus.QUEUED if queued else EventStatus.CLEARED, action))
            if queued:
                action_type = types.get(action)
                mode = action_type.mode if action_type is not None else Mode.PROPOSE
                if mode == Mode.ACT_THEN_REVIEW and (propose_only or not flagged):
                    mode = Mode.PROPOSE  # monitoring's propose-only switch; audit samples never act first
                items.append(
                    {
                        "event_id": event_id,
                        "source_id": source_id,
                        "proposed_action": action,
                        "score": score,
                        "kind": ItemKind.FLAGGED if flagged else ItemKind.AUDIT_SAMPLE,
                        "required_verdicts": 2 if flagged and action in four_eyes else 1,
                        "priority": priority_for(action, score, severities),
                        "mode": mode,
                        "created_at": now,
                    }
                )
        with transaction.atomic():
            changed = _events_write_scores(written, model_version_id=outcome.model_version_id, scored_at=now)
            items = [item for item in items if item["event_id"] in changed]
            # One review item per event is a unique constraint, so even a bug that let two
            # workers through could not queue an event twice.
            _review_items_insert(items)
            queued_ids = [item["event_id"] for item in items]
            items_opened(
                source_id=source_id,
                event_ids=queued_ids,
                acting=any(item["mode"] == Mode.ACT_THEN_REVIEW for item in items),
            )
            if queued_ids:
                transaction.on_commit(lambda queued_ids=queued_ids: enqueue_explanations(queued_ids))
        scored += len(changed)
    return scored


def _events_write_scores(rows: list[tuple[int, float, str, str]], *, model_version_id: int, scored_at) -> set[int]:
    """Write (event id, score, status, proposed action) rows, with model_version and scored_at
    (explanations come later, from explain_events), to the events still 'received'; return the
    ids written.

    On PostgreSQL one UPDATE ... FROM unnest(arrays) writes the whole batch: a single statement
    and a single round trip for a thousand rows. Django's bulk_update builds a CASE WHEN per row
    and per field, and building those expressions was most of a batch's time. Other databases
    write the few-valued fields with one UPDATE per (status, action) and bulk_update the rest.
    """
    if not rows:
        return set()
    if connection.vendor == "postgresql":
        ids, scores, statuses, actions = (list(column) for column in zip(*rows, strict=True))
        with _bound_cursor() as cursor:
            cursor.execute(
                WRITE_SCORES_SQL, [model_version_id, scored_at, ids, scores, statuses, actions, EventStatus.RECEIVED.value]
            )
            return {row[0] for row in cursor.fetchall()}
    shared: dict[tuple[str, str], list[int]] = {}
    for event_id, _, status, action in rows:
        shared.setdefault((status, action), []).append(event_id)
    for (status, action), ids in shared.items():
        Event.objects.filter(id__in=ids).update(
            status=status, proposed_action=action, model_version_id=model_version_id, scored_at=scored_at
        )
    Event.objects.bulk_update([Event(id=event_id, score=score) for event_id, score, _, _ in rows], ["score"], batch_size=500)
    return {event_id for event_id, _, _, _ in rows}  # read 'received' in this IMMEDIATE transaction


def _review_items_insert(items: list[dict]) -> None:
    """Insert new review items given as {field attname: value}; every other column takes its
    field's default. One review item per event: an event already queued is skipped.

    On PostgreSQL one INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING, since building
    a thousand model instances and their parameters was a tenth of a scoring batch's time."""
    if not items:
        return
    fields = [f for f in ReviewItem._meta.concrete_fields if not f.primary_key]
    if connection.vendor != "postgresql":
        ReviewItem.objects.bulk_create([ReviewItem(**item) for item in items], batch_size=500, ignore_conflicts=True)
        return
    # A column with one value for the whole batch (a default, the source, the time) is one
    # parameter; the others are arrays unnested side by side. event_id is always an array: it is
    # what gives unnest one row per item, even for a batch of one.
    columns, selected, scalars, casts, arrays = [], [], [], [], []
    for model_field in fields:
        default = model_field.get_default()
        db_type = model_field.db_type(connection)
        columns.append(connection.ops.quote_name(model_field.column))
        values = [item.get(model_field.attname, default) for item in items]
        values = [v.value if isinstance(v, enum.Enum) else v for v in values]
        first = values[0]
        if model_field.attname != "event_id" and all(v == first and type(v) is type(first) for v in values):
            selected.append(f"%s::{db_type}")
            scalars.append(first)
        else:
            selected.append(f"v.c{len(arrays)}")
            casts.append(f"%b::{db_type}[]")
            arrays.append(values)
    names = ", ".join(f"c{i}" for i in range(len(arrays)))
    with _bound_cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ReviewItem._meta.db_table} ({', '.join(columns)}) SELECT {', '.join(selected)} "
            f"FROM unnest({', '.join(casts)}) AS v({names}) ON CONFLICT (event_id) DO NOTHING",
            [*scalars, *arrays],
        )


# ---------------------------------------------------------------- review items


def _claim_filter(reviewer, now, *, escalated: bool = False) -> Q:
    """Items the reviewer may take: open, claimed by them, or held by a claim that has run out;
    with escalated=True (admins) also escalated items that no other admin holds."""
    states = [ReviewState.OPEN, ReviewState.CLAIMED, *([ReviewState.ESCALATED] if escalated else [])]
    free = Q(claimed_by__isnull=True) | Q(claimed_by=reviewer) | Q(claim_expires_at__lt=now)
    return Q(state__in=states) & free


# An escalated item keeps its state while an admin holds it: the state says why it waits (only an
# admin may close it), the claim fields say who is on it, so two admins never work on one. Such a
# hold counts as the admin's one held item (the unique index covers HELD_STATES).
_STATE_WHEN_HELD = Case(When(state=ReviewState.ESCALATED, then=Value(ReviewState.ESCALATED)), default=Value(ReviewState.CLAIMED))
_STATE_WHEN_LET_GO = Case(When(state=ReviewState.ESCALATED, then=Value(ReviewState.ESCALATED)), default=Value(ReviewState.OPEN))


class _ClaimRace(Exception):
    """A concurrent transaction of the same reviewer took another item first."""


class _LookAgain(Exception):
    """claim-next should start over: a parallel call of the reviewer won, or the items it could
    take were locked by calls that have settled since."""


def _release_if_held(*, item: ReviewItem, reviewer) -> int:
    return ReviewItem.objects.filter(pk=item.pk, state__in=HELD_STATES, claimed_by=reviewer).update(
        state=_STATE_WHEN_LET_GO, claimed_by=None, claim_expires_at=None
    )


def _claims_release_others(*, reviewer, why: str, keep_pk: int | None = None, only: Q | None = None) -> None:
    """Let go of the items the reviewer holds other than keep_pk (those matching `only`, if
    given): a claimed item goes back to the queue, an escalation stays escalated for any admin.

    A reviewer holds one item at a time (a partial unique index on claimed_by over HELD_STATES),
    so taking an item gives up the one held before."""
    held = ReviewItem.objects.filter(state__in=HELD_STATES, claimed_by=reviewer)
    if keep_pk is not None:
        held = held.exclude(pk=keep_pk)
    if only is not None:
        held = held.filter(only)
    for pk in list(held.values_list("pk", flat=True)):
        if _release_if_held(item=ReviewItem(pk=pk), reviewer=reviewer):
            audit_record(actor=reviewer, verb="item.release", obj=ReviewItem(pk=pk), after={"reason": why})


def _review_item_take(*, item: ReviewItem, reviewer, release_held: bool) -> ReviewItem:
    """One attempt at claiming item (an admin may take an escalated item, which keeps its state);
    raises _ClaimRace when the unique index refuses the claim because another transaction of this
    reviewer holds an item (committed, or committing now). With release_held, an item the
    reviewer holds elsewhere is let go first."""
    now = timezone.now()
    expires = now + timedelta(seconds=settings.SECAI_CLAIM_SECONDS)
    with transaction.atomic():
        if release_held:
            _claims_release_others(reviewer=reviewer, keep_pk=item.pk, why=f"claimed item {item.pk} instead")
        try:
            with transaction.atomic():
                won = (
                    ReviewItem.objects.filter(pk=item.pk)
                    .filter(_claim_filter(reviewer, now, escalated=roles.is_admin(reviewer)))
                    .update(state=_STATE_WHEN_HELD, claimed_by=reviewer, claim_expires_at=expires)
                )
        except IntegrityError as exc:
            raise _ClaimRace from exc
        item.refresh_from_db()
        if not won:
            raise _conflict_for(item, reviewer)
        audit_record(actor=reviewer, verb="item.claim", obj=item, after={"claim_expires_at": expires.isoformat()})
    return item


def review_item_claim(*, item: ReviewItem, reviewer) -> ReviewItem:
    """Claim an item for a reviewer, with a compare-and-set that works on SQLite and PostgreSQL.
    Admins may also claim an escalated item, which keeps its state. An item the reviewer held
    elsewhere is let go."""
    _require_reviewable(item, reviewer)
    if item.verdicts.filter(reviewer=reviewer, undone_at__isnull=True).exists():
        raise _own_verdict_conflict(item)
    for _attempt in range(3):
        try:
            return _review_item_take(item=item, reviewer=reviewer, release_held=True)
        except _ClaimRace:
            continue  # the reviewer claimed something else at the same instant: release it and retry
    raise ItemConflict("You are claiming other items at this moment; try again.", field="state")


def review_item_claim_next(*, reviewer, source: Source | None = None) -> ReviewItem | None:
    """Hand the reviewer the item they hold, or the highest-priority item nobody holds.

    An admin gets escalated items first: the reviewers disagreed on them, only an admin can close
    them, and they would otherwise wait behind every ordinary item. Nobody is handed an item they
    have given a verdict on or skipped within SECAI_SKIP_SECONDS, nor one of a source they do not
    review.

    Parallel calls of one reviewer (a double click, two tabs, a retried request) all return the
    same item: each attempt first looks for the reviewer's live hold, and when two attempts
    take different items at once the unique index lets one commit and the other starts over,
    finding the first one's item. A hold outside `source`, or one that has expired, is let go
    before a new item is taken; a live hold inside `source` never is, since it may be the one a
    parallel call has just committed."""
    from reviews.selectors import review_item_current_claim

    kinds = (True, False) if roles.is_admin(reviewer) else (False,)
    for _attempt in range(10):
        with transaction.atomic():
            current = review_item_current_claim(reviewer=reviewer, source=source)
            if current is not None:
                return current
            stale = Q(claim_expires_at__lt=timezone.now())
            if source is not None:
                stale |= ~Q(source=source)
            _claims_release_others(
                reviewer=reviewer, only=stale, why="expired, or outside the source asked for: claim-next took another"
            )
            try:
                for escalated in kinds:
                    item = _claim_first_free(reviewer=reviewer, source=source, escalated=escalated)
                    if item is not None:
                        return item
                return None
            except _LookAgain:
                continue
    return None


def _claim_first_free(*, reviewer, source: Source | None, escalated: bool) -> ReviewItem | None:
    """Claim the first open (or, with escalated, escalated) item claim-next may hand the reviewer;
    None when there is none. Raises _LookAgain when the attempt should start over."""
    from reviews.selectors import review_item_next_candidates, review_items_free_for

    candidates = list(review_item_next_candidates(source=source, reviewer=reviewer, escalated=escalated))
    if not candidates:
        if not connection.features.has_select_for_update_skip_locked:
            return None
        if not review_items_free_for(source=source, reviewer=reviewer, escalated=escalated).exists():
            return None  # nothing of this kind at all
        # Every such item is locked by calls still deciding (perhaps a parallel call of this
        # reviewer, about to commit its claim): wait for the first to settle and look again,
        # rather than tell the reviewer the queue is empty.
        list(review_item_next_candidates(source=source, reviewer=reviewer, escalated=escalated, skip_locked=False))
        raise _LookAgain
    for candidate in candidates:
        try:
            return _review_item_take(item=candidate, reviewer=reviewer, release_held=False)
        except _ClaimRace as exc:
            raise _LookAgain from exc  # a parallel call of this reviewer won: the next attempt returns its item
        except ItemConflict:
            continue  # another reviewer won this one between our read and our update
    raise _LookAgain


def review_item_release(*, item: ReviewItem, reviewer) -> ReviewItem:
    with transaction.atomic():
        released = _release_if_held(item=item, reviewer=reviewer)
        item.refresh_from_db()
        if not released:
            raise _conflict_for(item, reviewer, releasing=True)
        audit_record(actor=reviewer, verb="item.release", obj=item)
    return item


def review_item_skip(*, item: ReviewItem, reviewer) -> ItemSkip:
    """Pass on an item: let go of one's claim on it, so others can take it at once, and keep
    claim-next from handing it back to this reviewer for SECAI_SKIP_SECONDS. Opening the item
    from the queue still works; only the automatic hand-out avoids it."""
    _require_reviewable(item, reviewer)
    now = timezone.now()
    until = now + timedelta(seconds=settings.SECAI_SKIP_SECONDS)
    with transaction.atomic():
        if ReviewItem.objects.filter(pk=item.pk, state=ReviewState.DECIDED).exists():
            raise ItemConflict("This item has already been decided.", field="state")
        released = _release_if_held(item=item, reviewer=reviewer)
        skip, _created = ItemSkip.objects.update_or_create(item=item, reviewer=reviewer, defaults={"until": until})
        audit_record(
            actor=reviewer, verb="item.skip", obj=item, after={"released": bool(released), "skipped_until": until.isoformat()}
        )
    item.refresh_from_db()
    return skip


def review_claims_expire() -> int:
    """Reopen items whose claim has run out (an escalated item stays escalated) and forget skips
    that are over. Returns how many claims were let go."""
    now = timezone.now()
    with transaction.atomic():
        reopened = ReviewItem.objects.filter(state__in=HELD_STATES, claim_expires_at__lt=now).update(
            state=_STATE_WHEN_LET_GO, claimed_by=None, claim_expires_at=None
        )
        ItemSkip.objects.filter(until__lt=now).delete()
    return reopened


def _own_verdict_conflict(item: ReviewItem) -> ItemConflict:
    if item.state == ReviewState.ESCALATED:
        return ItemConflict(
            "You gave one of the verdicts that disagree; an admin who gave neither must decide this item.", field="state"
        )
    return ItemConflict("You have given your verdict on this item; a second reviewer must decide.", field="state")


def _conflict_for(item: ReviewItem, reviewer, releasing: bool = False) -> ItemConflict:
    if item.state == ReviewState.DECIDED:
        return ItemConflict("This item has already been decided.", field="state")
    if item.state in HELD_STATES and item.claimed_by_id not in (None, reviewer.pk) and item.claim_live:
        holder, until = item.claimed_by.get_username(), f"{item.claim_expires_at:%H:%M:%S} UTC"
        if item.state == ReviewState.ESCALATED:
            return ItemConflict(f"This escalated item is being decided by {holder} until {until}.", field="state")
        return ItemConflict(f"This item is claimed by {holder} until {until}.", field="state")
    if item.state == ReviewState.ESCALATED:
        return ItemConflict("The reviewers disagreed on this item; it is escalated to an admin.", field="state")
    if releasing:
        return ItemConflict("You do not hold a claim on this item.", field="state")
    return ItemConflict(f"This item cannot be taken in state {item.state}.", field="state")


def reason_codes_for(*, verdict: str | None = None) -> list[str]:
    """Active reason codes, optionally those that fit a verdict."""
    qs = ReasonCode.objects.filter(active=True)
    if verdict is not None:
        qs = qs.filter(applies_to__in=[verdict, ReasonApplies.BOTH])
    return list(qs.values_list("code", flat=True))


def _live_verdicts(item: ReviewItem) -> list[str]:
    """The verdicts that count towards the item's decision: not undone and, after an appeal
    reopened the item, given since then."""
    live_qs = item.verdicts.filter(undone_at__isnull=True)
    if item.reopened_at is not None:
        live_qs = live_qs.filter(created_at__gte=item.reopened_at)
    return list(live_qs.order_by("pk").values_list("verdict", flat=True))


def queue_counts_changed() -> None:
    """Make every cached filter-bar count stale (selectors.review_queue_counts keys them by this
    generation), so that after a decision the counts agree with the list."""
    from reviews.selectors import COUNTS_GENERATION_KEY

    cache = caches["shared"]
    try:
        cache.incr(COUNTS_GENERATION_KEY)
    except ValueError:  # not set yet, or evicted
        cache.set(COUNTS_GENERATION_KEY, 1, None)


def verdict_submit(
    *,
    item: ReviewItem,
    reviewer,
    verdict: str,
    reason: str,
    note: str = "",
    allowlist_entity: bool = False,
    bulk: dict[str, Any] | None = None,
) -> Verdict:
    """Record a reviewer's verdict; close the item once enough reviewers agree.

    The item row is taken with a compare-and-set (open, claimed by this reviewer, or held by an
    expired claim; escalated items only by an admin nobody else's live hold keeps out), so a
    second reviewer or a second submission gets an ItemConflict (HTTP 409) and changes nothing.
    The update also locks the row, which orders concurrent verdicts on one four-eyes item.

    Items needing two verdicts (four-eyes) return to the queue after the first; a second,
    agreeing verdict from another reviewer decides them; disagreement escalates to an admin,
    whose verdict is final. A decided item becomes a training label (approve = threat), and its
    outcome goes to the actions side (execute, cancel or reverse; see actions.services).

    allowlist_entity (overturn only) puts the event's entity on the source's allow list in the
    same transaction, for SECAI_ALLOWLIST_DAYS days. `bulk` ({"id", "count"}) marks the audit
    entry as one part of a bulk decision.
    """
    _require_reviewable(item, reviewer)
    if allowlist_entity and verdict != VerdictChoice.OVERTURN:
        raise ServiceError("only an overturn can put the entity on the allow list", field="allowlist_entity")
    if verdict not in VerdictChoice.values:
        raise ServiceError(f"verdict must be one of {', '.join(VerdictChoice.values)}", field="verdict")
    allowed = reason_codes_for(verdict=verdict)
    if reason not in allowed:
        raise ServiceError(f"reason must be one of {', '.join(allowed)} for {verdict}", field="reason")
    now = timezone.now()
    takeable = _claim_filter(reviewer, now, escalated=roles.is_admin(reviewer))
    with transaction.atomic():
        # Someone else's expired hold counts as free. Letting go of it first keeps the item out of
        # the 'claimed' state while this reviewer decides it, so a reviewer who holds another
        # item does not briefly hold two (one held item per reviewer is a unique index).
        ReviewItem.objects.filter(pk=item.pk, state__in=HELD_STATES, claim_expires_at__lt=now).exclude(
            claimed_by=reviewer
        ).update(state=_STATE_WHEN_LET_GO, claimed_by=None, claim_expires_at=None)
        # An admin's verdict on an escalation decides it in this transaction, so the item is not
        # marked as theirs: that would count as a second hold next to a claim they have elsewhere.
        holder = Case(
            When(state=ReviewState.ESCALATED, then=F("claimed_by")),
            default=Value(reviewer.pk),
            output_field=IntegerField(),
        )
        won = ReviewItem.objects.filter(pk=item.pk).filter(takeable).update(claimed_by=holder, claim_expires_at=None)
        item.refresh_from_db()
        if not won:
            raise _conflict_for(item, reviewer)
        before_state = item.state
        try:
            with transaction.atomic():
                record = Verdict.objects.create(item=item, reviewer=reviewer, verdict=verdict, reason=reason, note=note)
        except IntegrityError as exc:
            raise _own_verdict_conflict(item) from exc
        live = _live_verdicts(item)
        if before_state == ReviewState.ESCALATED or len(live) >= item.required_verdicts and len(set(live)) == 1:
            from actions.services import item_decided

            _item_decide(item=item, record=record, now=now)
            item_decided(item=item, verdict=verdict, record=record, by="verdict")
            verb, after = "item.decide", {"state": ReviewState.DECIDED, "verdict": verdict, "reason": reason}
        elif len(live) >= item.required_verdicts:
            ReviewItem.objects.filter(pk=item.pk).update(state=ReviewState.ESCALATED, claimed_by=None, claim_expires_at=None)
            verb, after = "item.escalate", {"state": ReviewState.ESCALATED, "verdicts": live}
        else:
            ReviewItem.objects.filter(pk=item.pk).update(state=ReviewState.OPEN, claimed_by=None, claim_expires_at=None)
            verb, after = (
                "item.first_opinion",
                {"state": ReviewState.OPEN, "verdict": verdict, "reason": reason, "awaiting": item.required_verdicts - len(live)},
            )
        audit_record(
            actor=reviewer,
            verb=verb,
            obj=item,
            before={"state": before_state, "proposed_action": item.proposed_action},
            after=after if bulk is None else {**after, "bulk": bulk},
        )
        if allowlist_entity:
            if verb != "item.decide":
                # On a four-eyes item only the verdict that decides it may change the allow list.
                raise ServiceError(
                    "only the verdict that decides the item can put the entity on the allow list", field="allowlist_entity"
                )
            from actions.choices import ListKind
            from actions.services import list_entry_add

            try:
                list_entry_add(
                    source=item.source,
                    kind=ListKind.ALLOW,
                    entity=item.event.entity,
                    actor=reviewer,
                    expires_at=now + timedelta(days=settings.SECAI_ALLOWLIST_DAYS),
                    reason=f"overturned item {item.pk}: {reason}",
                )
            except ServiceError as exc:  # on the block list: the verdict is not recorded either
                raise ServiceError(exc.message, field="allowlist_entity") from exc
        item.refresh_from_db()
        source_id = item.source_id
        if item.state == ReviewState.DECIDED:
            transaction.on_commit(lambda: _maybe_retrain(source_id))
    transaction.on_commit(queue_counts_changed)  # the filter bar must not contradict the list
    return record


def _item_decide(*, item: ReviewItem, record: Verdict, now) -> None:
    ReviewItem.objects.filter(pk=item.pk).update(state=ReviewState.DECIDED, decided_at=now, claim_expires_at=None)
    Event.objects.filter(pk=item.event_id).update(status=EventStatus.DECIDED)
    Label.objects.update_or_create(
        event_id=item.event_id,
        defaults={
            "is_threat": record.verdict == VerdictChoice.APPROVE,
            # Audit-sample labels are kept apart so training can weigh them separately from
            # the labels of flagged events, which over-represent what the model already flags;
            # an appeal's verdict corrects the label and says so.
            "origin": {ItemKind.AUDIT_SAMPLE: LabelOrigin.AUDIT_SAMPLE, ItemKind.APPEAL: LabelOrigin.APPEAL}.get(
                item.kind, LabelOrigin.VERDICT
            ),
            "verdict": record,
        },
    )


def verdict_undo(*, verdict: Verdict, reviewer) -> ReviewItem:
    """Take back one's own verdict within SECAI_UNDO_SECONDS. The item returns to the reviewer's
    claim with the other reviewers' verdicts intact, and a label made from this verdict is
    removed. The verdict row stays (marked undone) and the undo is audited.

    Only while nobody else has acted on the item since: a later verdict (a second opinion, an
    admin's final word on an escalation) decided on top of this one and made the label, and a
    live claim is another reviewer's work in progress. Undoing under either would reopen an item
    someone else closed, or take it out of their hands."""
    if verdict.reviewer_id != reviewer.pk:
        raise ItemConflict("Only the reviewer who gave a verdict can undo it.", field="verdict")
    _require_reviewable(verdict.item, reviewer)
    now = timezone.now()
    window = timedelta(seconds=settings.SECAI_UNDO_SECONDS)
    with transaction.atomic():
        # Lock the item first so undo and a concurrent second opinion are ordered.
        item = ReviewItem.objects.select_for_update().get(pk=verdict.item_id)
        later = (
            Verdict.objects.filter(item_id=item.pk, undone_at__isnull=True, pk__gt=verdict.pk)
            .exclude(reviewer=reviewer)
            .select_related("reviewer")
            .order_by("-pk")
            .first()
        )
        if later is not None:
            raise ItemConflict(
                f"{later.reviewer.get_username()} has given a verdict on this item since yours, so yours can no longer be undone.",
                field="verdict",
            )
        if (
            item.state in HELD_STATES
            and item.claimed_by_id not in (None, reviewer.pk)
            and (item.claim_expires_at is None or item.claim_expires_at > now)
        ):
            raise ItemConflict(
                f"{item.claimed_by.get_username()} holds this item now, so your verdict can no longer be undone.",
                field="verdict",
            )
        undone = Verdict.objects.filter(pk=verdict.pk, undone_at__isnull=True, created_at__gte=now - window).update(undone_at=now)
        if not undone:
            raise ItemConflict(
                f"This verdict can no longer be undone (undo is possible for {settings.SECAI_UNDO_SECONDS} seconds).",
                field="verdict",
            )
        before_state = item.state
        Label.objects.filter(event_id=item.event_id, verdict_id=verdict.pk).delete()
        # The item returns to the reviewer's hold; the item the console handed them next is let
        # go (one held item per reviewer). An admin who takes back their word on an escalation
        # holds it again as an escalation: the reviewers' verdicts still disagree.
        _claims_release_others(reviewer=reviewer, keep_pk=item.pk, why=f"took item {item.pk} back with an undo")
        remaining = _live_verdicts(item)
        back_to = (
            ReviewState.ESCALATED if len(remaining) >= item.required_verdicts and len(set(remaining)) > 1 else ReviewState.CLAIMED
        )
        ReviewItem.objects.filter(pk=item.pk).update(
            state=back_to,
            claimed_by=reviewer,
            claim_expires_at=now + timedelta(seconds=settings.SECAI_CLAIM_SECONDS),
            decided_at=None,
        )
        Event.objects.filter(pk=item.event_id, status=EventStatus.DECIDED).update(status=EventStatus.QUEUED)
        if before_state == ReviewState.DECIDED:
            from actions.services import verdict_undone

            verdict_undone(item=item, verdict=verdict)
        audit_record(
            actor=reviewer,
            verb="verdict.undo",
            obj=item,
            before={"state": before_state, "verdict": verdict.verdict, "verdict_id": verdict.pk},
            after={"state": back_to},
        )
        item.refresh_from_db()
    transaction.on_commit(queue_counts_changed)
    return item


@dataclass
class BulkResult:
    bulk_id: str = ""
    decided: int = 0
    first_opinions: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)


BULK_UNKNOWN_ITEM = "No such item among the sources you review."


def verdict_submit_bulk(*, item_ids: list[int], reviewer, verdict: str, reason: str, note: str = "") -> BulkResult:
    """Apply one verdict to many items, each in its own transaction, so one item held by another
    reviewer is skipped and reported rather than failing the rest. Ids of items that do not exist
    or belong to sources the reviewer is not assigned to are skipped alike, with the same message
    (which of the two is not told); an id given twice counts once.

    The audit trail shows it as one action: every item's entry carries the same bulk id and the
    number of items chosen, and a closing "bulk.decide" entry sums up what happened to them."""
    from reviews.selectors import scoped_to_reviewer

    item_ids = list(dict.fromkeys(item_ids))  # a repeated id is one item
    if len(item_ids) > settings.SECAI_MAX_BULK:
        raise ServiceError(f"at most {settings.SECAI_MAX_BULK} items per bulk decision", field="items")
    items = list(scoped_to_reviewer(ReviewItem.objects.filter(pk__in=item_ids), viewer=reviewer).order_by("pk"))
    result = BulkResult(bulk_id=uuid.uuid4().hex)
    found = {item.pk for item in items}
    unknown = sorted(pk for pk in item_ids if pk not in found)
    bulk = {"id": result.bulk_id, "count": len(items)}
    for item in items:
        try:
            verdict_submit(item=item, reviewer=reviewer, verdict=verdict, reason=reason, note=note, bulk=bulk)
        except ItemConflict as exc:
            result.skipped.append({"id": item.pk, "message": exc.message})
            continue
        item.refresh_from_db()
        if item.state == ReviewState.DECIDED:
            result.decided += 1
        else:
            result.first_opinions += 1
    result.skipped.extend({"id": pk, "message": BULK_UNKNOWN_ITEM} for pk in unknown)
    audit_record(
        actor=reviewer,
        verb="bulk.decide",
        object_type="bulk",
        object_id=result.bulk_id,
        after={
            "bulk": bulk,
            "verdict": verdict,
            "reason": reason,
            "items": [i.pk for i in items],
            "decided": result.decided,
            "first_opinions": result.first_opinions,
            "skipped": [s["id"] for s in result.skipped],
        },
    )
    return result


def _maybe_retrain(source_id: int) -> None:
    from models_registry.tasks import retrain_if_enough_verdicts

    try:
        retrain_if_enough_verdicts.delay(source_id)
    except Exception:  # the nightly schedule retrains anyway
        logger.exception("could not enqueue the verdict-count retrain check")


# ---------------------------------------------------------------- retention


@dataclass
class ArchiveResult:
    events: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    labels: int = 0
    review_items: int = 0


def events_archive(
    *,
    before: datetime,
    out: Path | None,
    statuses: tuple[str, ...] = ("cleared", "decided"),
    source: Source | None = None,
    batch_size: int = 1000,
) -> ArchiveResult:
    """Export to `out`, then delete, the events received before `before` whose work is done.

    Chunk by chunk, in one transaction each: lock the events and their review items, write them
    to the file and flush it to disk, delete them, commit. Nothing is deleted that is not on disk
    first; if the deletion fails, the chunk is cut from the file again. An interrupted run can at
    worst leave its last chunk both in the file and in the database. With out=None nothing is
    written or deleted: the result counts what would be archived.
    """
    from reviews.archive import ARCHIVABLE, ArchiveFile, event_record

    refused = set(statuses) - set(ARCHIVABLE)
    if refused or not statuses:
        raise ServiceError(f"only events in {', '.join(ARCHIVABLE)} can be archived, not {', '.join(sorted(refused))}", "status")
    if before > timezone.now() - timedelta(days=1):
        # Recent decisions can still be undone, and recent events are what monitoring compares.
        raise ServiceError("--before must be at least a day ago", "before")
    done = Event.objects.filter(status__in=statuses, received_at__lt=before)
    if source is not None:
        done = done.filter(source=source)
    result = ArchiveResult()
    if out is None:
        for name, n in done.values_list("source__name").annotate(n=Count("id")).order_by("source__name"):
            result.by_source[name] = n
        result.events = sum(result.by_source.values())
        return result
    archive = ArchiveFile(out)
    try:
        while True:
            offset = archive.size()
            try:
                with transaction.atomic():
                    ids = list(done.order_by("id").select_for_update().values_list("id", flat=True)[:batch_size])
                    if not ids:
                        break
                    # Items too, so an undo racing this chunk waits for it instead of deadlocking.
                    list(ReviewItem.objects.filter(event_id__in=ids).select_for_update().values_list("id", flat=True))
                    events = list(
                        Event.objects.filter(id__in=ids)
                        .select_related("source", "model_version", "review_item", "label")
                        .prefetch_related("review_item__verdicts__reviewer")
                        .order_by("id")
                    )
                    archive.write_chunk([event_record(e) for e in events])
                    result.labels += Label.objects.filter(event_id__in=ids).delete()[0]
                    Verdict.objects.filter(item__event_id__in=ids).delete()
                    result.review_items += ReviewItem.objects.filter(event_id__in=ids).delete()[0]
                    Event.objects.filter(id__in=ids).delete()
                    chunk: dict[Source, list[int]] = {}
                    for e in events:
                        chunk.setdefault(e.source, []).append(e.pk)
                    for chunk_source, chunk_ids in chunk.items():
                        audit_record(
                            actor=None,
                            actor_label="system:archive",
                            verb="events.archive",
                            obj=chunk_source,
                            after={
                                "events": len(chunk_ids),
                                "ids": [chunk_ids[0], chunk_ids[-1]],
                                "received_before": before.isoformat(),
                                "statuses": list(statuses),
                                "file": str(out),
                            },
                        )
                        result.by_source[chunk_source.name] = result.by_source.get(chunk_source.name, 0) + len(chunk_ids)
                    result.events += len(events)
            except BaseException:
                archive.truncate(offset)  # this chunk's deletion did not commit: it stays in the database only
                raise
    finally:
        archive.close()
    return result
