"""Writes for actions: configuration (executors, action types, modes, lists, subscriptions), the
outbox of deliveries and its state machine, deadline fallbacks and appeals.

The outbox: whatever decides that the outside world must hear something (a verdict, an
act-then-review item, a deadline, an appeal, a promotion) writes a Delivery row in its own
transaction and enqueues its id after commit; a task on the `actions` queue sends it. An event has
at most one execution row and one reversal row (unique constraints), and every state change is a
compare-and-set update, so retries, redelivered messages, dead workers and undone verdicts cannot
execute an action twice or reverse one that was never acknowledged.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from actions import delivery as outbound
from actions import selectors
from actions.choices import (
    BUILTIN_ACTIONS,
    AppealState,
    DeliveryKind,
    DeliveryState,
    ExecutorKind,
    Fallback,
    ListKind,
    Mode,
    Topic,
)
from actions.models import ActionType, Appeal, Delivery, Executor, ListEntry, Subscription
from reviews.audit import audit_record
from reviews.choices import EventStatus, ItemKind, ReviewState, VerdictChoice
from reviews.models import Event, ReviewItem, Source, Verdict
from reviews.services import ItemConflict, ServiceError

logger = logging.getLogger(__name__)

# Appeals go before everything else in the queue (action severities are at most 100, scores at most 1).
APPEAL_PRIORITY = 1000.0
MAX_LOG_ENTRIES = 20


def _label(actor, actor_label: str = "") -> str:
    if actor_label:
        return actor_label
    return actor.get_username() if getattr(actor, "is_authenticated", False) else "system"


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


# ---------------------------------------------------------------- configuration


def action_types_seed(*, source: Source) -> None:
    """Give a new source the built-in actions (allow, step_up, deny, block), in propose mode."""
    for name, label, severity in BUILTIN_ACTIONS:
        ActionType.objects.get_or_create(
            source=source, name=name, defaults={"label": label, "severity": severity, "builtin": True, "mode": Mode.PROPOSE}
        )


def _check_url(url: str, field: str) -> None:
    problem = outbound.url_problem(url)
    if problem:
        raise ServiceError(f"{field} {problem}", field=field)


def _executor_view(executor: Executor) -> dict[str, Any]:
    return {
        "name": executor.name,
        "kind": executor.kind,
        "url": executor.url,
        "reversal_url": executor.reversal_url,
        "secret": executor.secret_hint,
        "max_attempts": executor.max_attempts,
        "timeout_seconds": executor.timeout_seconds,
        "active": executor.active,
    }


EXECUTOR_FIELDS = ("name", "kind", "url", "reversal_url", "secret", "max_attempts", "timeout_seconds", "active")


def executor_save(*, actor, executor: Executor | None = None, **changes: Any) -> Executor:
    """Create or change an executor. A blank secret on a change keeps the current one; the audit
    trail records only the secret's hint."""
    unknown = set(changes) - set(EXECUTOR_FIELDS)
    if unknown:
        raise ServiceError(f"unknown fields: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        if executor is None:
            executor, before = Executor(), None
        else:
            executor = Executor.objects.select_for_update().get(pk=executor.pk)
            before = _executor_view(executor)
        if changes.get("secret") in ("", None):
            changes.pop("secret", None)
        for key, value in changes.items():
            setattr(executor, key, value)
        if executor.kind == ExecutorKind.WEBHOOK:
            if not executor.url:
                raise ServiceError("a webhook executor needs a url", field="url")
            _check_url(executor.url, "url")
            if executor.reversal_url:
                _check_url(executor.reversal_url, "reversal_url")
            if len(executor.secret) < 16:
                raise ServiceError("a webhook executor needs a secret of at least 16 characters", field="secret")
        executor.full_clean()
        executor.save()
        after = _executor_view(executor)
        if after != before:
            audit_record(actor=actor, verb="executor.save", obj=executor, before=before, after=after)
    return executor


ACTION_TYPE_FIELDS = (
    "name",
    "label",
    "severity",
    "executor",
    "mode",
    "deadline_minutes",
    "deadline_fallback",
    "deadline_verdict",
)


def _action_type_view(at: ActionType) -> dict[str, Any]:
    return {
        "name": at.name,
        "label": at.label,
        "severity": at.severity,
        "executor": at.executor.name if at.executor_id else None,
        "mode": at.mode,
        "deadline_minutes": at.deadline_minutes,
        "deadline_fallback": at.deadline_fallback,
        "deadline_verdict": at.deadline_verdict,
    }


def action_type_save(*, actor, source: Source | None = None, action_type: ActionType | None = None, **changes: Any) -> ActionType:
    """Create an action type for a source, or change one. A change of mode is recorded in the audit
    trail as its own entry ("action_type.mode"), since it decides what runs without a reviewer."""
    unknown = set(changes) - set(ACTION_TYPE_FIELDS)
    if unknown:
        raise ServiceError(f"unknown fields: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        if action_type is None:
            if source is None:
                raise ServiceError("name the source", field="source")
            at, before = ActionType(source=source, mode=Mode.PROPOSE), None
        else:
            at = ActionType.objects.select_for_update(of=("self",)).select_related("executor").get(pk=action_type.pk)
            before = _action_type_view(at)
            if "name" in changes and changes["name"] != at.name:
                raise ServiceError("an action keeps its name: policies and past events refer to it", field="name")
        for key, value in changes.items():
            setattr(at, key, value)
        if at.deadline_fallback == Fallback.APPLY_DEFAULT and at.deadline_verdict not in VerdictChoice.values:
            raise ServiceError(
                "applying a default verdict needs deadline_verdict (approve or overturn)", field="deadline_verdict"
            )
        if at.deadline_fallback != Fallback.WAIT and not at.deadline_minutes:
            raise ServiceError("a deadline fallback needs deadline_minutes", field="deadline_minutes")
        if at.deadline_fallback != Fallback.APPLY_DEFAULT:
            at.deadline_verdict = ""
        if ActionType.objects.filter(source_id=at.source_id, name=at.name).exclude(pk=at.pk).exists():
            raise ServiceError(f"the source already has an action named {at.name}", field="name")
        at.full_clean(exclude=["source"])
        at.save()
        after = _action_type_view(at)
        if before is not None and before["mode"] != after["mode"]:
            audit_record(
                actor=actor, verb="action_type.mode", obj=at, before={"mode": before["mode"]}, after={"mode": after["mode"]}
            )
        if after != before:
            deadline_changed = before is None or any(
                before[k] != after[k] for k in ("deadline_minutes", "deadline_fallback", "deadline_verdict")
            )
            audited = dict(after)
            if deadline_changed and at.deadline_fallback != Fallback.WAIT:
                # The consequence the admin confirmed: the backlog the next run escalates or decides.
                audited["items_past_deadline"] = items_past_deadline(action_type=at)
            audit_record(actor=actor, verb="action_type.save", obj=at, before=before, after=audited)
    return at


def subscription_save(*, actor, subscription: Subscription | None = None, **changes: Any) -> Subscription:
    allowed = {"name", "url", "secret", "topics", "source", "max_attempts", "timeout_seconds", "active"}
    unknown = set(changes) - allowed
    if unknown:
        raise ServiceError(f"unknown fields: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        sub = Subscription() if subscription is None else Subscription.objects.select_for_update().get(pk=subscription.pk)
        before = None if subscription is None else _subscription_view(sub)
        if changes.get("secret") in ("", None):
            changes.pop("secret", None)
        for key, value in changes.items():
            setattr(sub, key, value)
        _check_url(sub.url, "url")
        if len(sub.secret) < 16:
            raise ServiceError("a subscription needs a secret of at least 16 characters", field="secret")
        topics = list(dict.fromkeys(sub.topics or []))
        bad = [t for t in topics if t not in Topic.values]
        if not topics or bad:
            raise ServiceError(f"topics must be a non-empty list of {', '.join(Topic.values)}", field="topics")
        sub.topics = topics
        sub.full_clean()
        sub.save()
        after = _subscription_view(sub)
        if after != before:
            audit_record(actor=actor, verb="subscription.save", obj=sub, before=before, after=after)
    return sub


def _subscription_view(sub: Subscription) -> dict[str, Any]:
    return {
        "name": sub.name,
        "url": sub.url,
        "secret": sub.secret_hint,
        "topics": sub.topics,
        "source": sub.source.name if sub.source_id else None,
        "active": sub.active,
    }


# ---------------------------------------------------------------- allow and block lists


def list_entry_add(
    *,
    source: Source,
    kind: str,
    entity: str,
    actor,
    expires_at: datetime | None = None,
    reason: str = "",
    action: str = "",
    actor_label: str = "",
) -> ListEntry:
    """Put an entity on a source's allow or block list. A block-list entry names the action its
    events propose at least; it defaults to the most severe one.

    An entity is on at most one of a source's two lists: adding it to one while a live (not removed,
    not expired) entry on the other exists is refused, naming that entry, since the allow list
    would silently win. Adding it again to the list it is on updates that entry's expiry, action
    and reason (a renewal): the returned entry's `updated` is True then, and the audit verb is
    list.<kind>.update with the values before and after."""
    if kind not in ListKind.values:
        raise ServiceError(f"kind must be one of {', '.join(ListKind.values)}", field="kind")
    entity = (entity or "").strip()
    if not entity or len(entity) > 200 or not entity.isprintable():
        raise ServiceError("entity must be 1 to 200 printable characters", field="entity")
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError("expires_at must be in the future", field="expires_at")
    types = selectors.action_types_of(source_id=source.pk)
    if kind == ListKind.BLOCK:
        action = action or max(types.values(), key=lambda t: t.severity).name
        if action not in types or types[action].severity == 0:
            raise ServiceError(f"action must be one of this source's actions other than allow: {action!r}", field="action")
    elif action:
        raise ServiceError("only block-list entries name an action", field="action")
    label = _label(actor, actor_label)
    with transaction.atomic():
        # One source's list changes one at a time (PostgreSQL; SQLite writes one at a time anyway),
        # so an allow and a block posted together cannot both pass the check below.
        Source.objects.select_for_update().filter(pk=source.pk).first()
        now = timezone.now()
        other = (
            ListEntry.objects.filter(source=source, entity=entity, removed_at__isnull=True)
            .exclude(kind=kind)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .first()
        )
        if other is not None:
            until = f"until {other.expires_at:%Y-%m-%d %H:%M} UTC" if other.expires_at else "without expiry"
            raise ServiceError(
                f"{entity} is already on the {other.kind} list of {source.name} (entry {other.pk}, added by "
                f"{other.created_by or 'unknown'}, {until}); remove that entry first",
                field="kind",
            )
        live = (
            ListEntry.objects.select_for_update().filter(source=source, kind=kind, entity=entity, removed_at__isnull=True).first()
        )
        before = None
        if live is not None:
            before = {
                "expires_at": live.expires_at.isoformat() if live.expires_at else None,
                "action": live.action,
                "reason": live.reason,
            }
            # An expired entry is replaced rather than revived, so its history stays as it was.
            if live.expires_at is not None and live.expires_at <= now:
                ListEntry.objects.filter(pk=live.pk).update(removed_at=live.expires_at, removed_by="expired")
                live = None
        if live is None:
            entry = ListEntry.objects.create(
                source=source, kind=kind, entity=entity, action=action, reason=reason, expires_at=expires_at, created_by=label
            )
            entry.updated = False
        else:
            ListEntry.objects.filter(pk=live.pk).update(expires_at=expires_at, action=action, reason=reason or live.reason)
            entry = ListEntry.objects.get(pk=live.pk)
            entry.updated = True
        audit_record(
            actor=actor,
            actor_label=label,
            verb=f"list.{kind}.{'update' if entry.updated else 'add'}",
            obj=entry,
            before=before,
            after={
                "entity": entity,
                "expires_at": expires_at.isoformat() if expires_at else None,
                "action": action,
                "reason": entry.reason,
            },
        )
    return entry


def list_entry_remove(*, entry: ListEntry, actor) -> ListEntry:
    with transaction.atomic():
        removed = ListEntry.objects.filter(pk=entry.pk, removed_at__isnull=True).update(
            removed_at=timezone.now(), removed_by=_label(actor)
        )
        if not removed:
            raise ItemConflict("this entry has already been removed", field="entry")
        entry.refresh_from_db()
        audit_record(actor=actor, verb=f"list.{entry.kind}.remove", obj=entry, before={"entity": entry.entity})
    return entry


# ---------------------------------------------------------------- outbox


def _enqueue_after_commit(ids: list[int]) -> None:
    if ids:
        transaction.on_commit(lambda: deliveries_enqueue(ids))


def deliveries_enqueue(ids: list[int], countdown: float | None = None) -> None:
    """Hand delivery ids to the `actions` queue. If the broker is down the rows stay due in the
    database and the sweeper sends them."""
    from actions.tasks import deliver

    if countdown and deliver.app.conf.task_always_eager:
        # Tasks run in-process cannot wait: the delivery would be found not yet due again, and
        # again, until the stack ran out (a RecursionError inside whatever transaction was open).
        # The sweeper sends it once it is due.
        return
    for start in range(0, len(ids), 50):
        try:
            deliver.apply_async(args=[ids[start : start + 50]], countdown=countdown)
        except Exception:
            logger.exception("could not enqueue %d deliveries; the sweeper will send them", len(ids[start : start + 50]))
            return


def _event_payload(event: Event) -> dict[str, Any]:
    return {
        "id": event.pk,
        "external_id": event.external_id,
        "entity": event.entity,
        "occurred_at": event.occurred_at.isoformat() if event.occurred_at else None,
        "score": event.score,
    }


def _action_body(*, kind: str, key: str, item: ReviewItem, action_type: ActionType, reason: str, appeal: Appeal | None) -> str:
    return _dumps(
        {
            "operation": kind,
            "idempotency_key": key,
            "source": item.source.name,
            "action": action_type.name,
            "action_label": action_type.label,
            "entity": item.event.entity,
            "event": _event_payload(item.event),
            "item": item.pk,
            "mode": item.mode,
            "reason": reason,
            "appeal": appeal.external_id if appeal else None,
            "created_at": timezone.now().isoformat(),
        }
    )


def _action_row_create(
    *,
    kind: str,
    item: ReviewItem,
    action_type: ActionType,
    executor: Executor,
    reason: str,
    appeal: Appeal | None = None,
    state: str = DeliveryState.PENDING,
) -> Delivery | None:
    """The event's one execution or one reversal row; None if a concurrent transaction wrote it
    first (the unique constraint said so)."""
    key = f"secai-event-{item.event_id}-{kind}"
    try:
        with transaction.atomic():
            return Delivery.objects.create(
                kind=kind,
                event_id=item.event_id,
                item=item,
                source_id=item.source_id,
                action=action_type.name,
                executor=executor,
                idempotency_key=key,
                body=_action_body(kind=kind, key=key, item=item, action_type=action_type, reason=reason, appeal=appeal),
                state=state,
                max_attempts=executor.max_attempts,
                next_attempt_at=timezone.now(),
            )
    except IntegrityError:
        return None


def _execution_row(event_id: int, kind: str) -> Delivery | None:
    return (
        Delivery.objects.select_for_update(of=("self",)).filter(event_id=event_id, kind=kind).select_related("executor").first()
    )


@transaction.atomic(savepoint=False)  # joins the caller's transaction, or opens one
def execution_request(*, item: ReviewItem, action_type: ActionType | None, reason: str, enqueue: bool = True) -> Delivery | None:
    """Make sure the item's action is executed, once. Call inside the deciding transaction.

    Nothing happens for an action without an executor (recorded only), nor for an allow-listed
    entity. A row withdrawn before it was ever sent is revived; a reversal not yet sent is
    cancelled; an action that was executed and then reversed is not executed a second time."""
    if action_type is None or action_type.executor_id is None or not action_type.executor.active:
        return None
    if selectors.entity_allowlisted(source_id=item.source_id, entity=item.event.entity):
        audit_record(
            actor=None, actor_label="system:actions", verb="action.skip", obj=item, after={"why": "entity on the allow list"}
        )
        return None
    now = timezone.now()
    existing = _execution_row(item.event_id, DeliveryKind.EXECUTE)
    if existing is None:
        row = _action_row_create(
            kind=DeliveryKind.EXECUTE, item=item, action_type=action_type, executor=action_type.executor, reason=reason
        )
        if row is not None:
            audit_record(actor=None, actor_label="system:actions", verb="action.request", obj=item, after={"delivery": row.pk})
            if enqueue:
                _enqueue_after_commit([row.pk])
            return row
        existing = _execution_row(item.event_id, DeliveryKind.EXECUTE)  # a concurrent decision made it first
    assert existing is not None
    reversal = _execution_row(item.event_id, DeliveryKind.REVERSE)
    unsent_reversal = (
        reversal is not None and reversal.attempts == 0 and reversal.state in (DeliveryState.HELD, DeliveryState.PENDING)
    )
    if reversal is not None and reversal.state != DeliveryState.CANCELLED and not unsent_reversal:
        # At most once: the action was executed and its reversal has gone out; it is not repeated.
        audit_record(
            actor=None,
            actor_label="system:actions",
            verb="action.not_repeated",
            obj=item,
            after={"why": "executed once and reversed already"},
        )
        return existing
    if unsent_reversal:
        Delivery.objects.filter(pk=reversal.pk, attempts=0, state__in=[DeliveryState.HELD, DeliveryState.PENDING]).update(
            state=DeliveryState.CANCELLED
        )
    Delivery.objects.filter(pk=existing.pk).update(withdrawn=False)
    if Delivery.objects.filter(pk=existing.pk, state=DeliveryState.CANCELLED).update(
        state=DeliveryState.PENDING, next_attempt_at=now
    ):
        audit_record(actor=None, actor_label="system:actions", verb="action.request", obj=item, after={"delivery": existing.pk})
        _enqueue_after_commit([existing.pk])
    return existing


@transaction.atomic(savepoint=False)  # joins the caller's transaction, or opens one
def execution_withdraw(*, item: ReviewItem, reason: str, appeal: Appeal | None = None) -> str:
    """The item's action must not stand. Call inside the deciding transaction. Returns what was done:
    "none", "cancelled" (never sent), "reversal" (a reversal is due or waits for the action's
    acknowledgement), "unacknowledged" (given up, never acknowledged: nothing to reverse) or
    "irreversible" (the executor has no reversal call)."""
    execution = _execution_row(item.event_id, DeliveryKind.EXECUTE)
    if execution is None or execution.state == DeliveryState.CANCELLED:
        return "none"
    if execution.attempts == 0 and Delivery.objects.filter(
        pk=execution.pk, attempts=0, state__in=[DeliveryState.PENDING, DeliveryState.HELD]
    ).update(state=DeliveryState.CANCELLED, withdrawn=True):
        audit_record(actor=None, actor_label="system:actions", verb="action.cancel", obj=item, after={"delivery": execution.pk})
        return "cancelled"
    Delivery.objects.filter(pk=execution.pk).update(withdrawn=True)
    if execution.state == DeliveryState.FAILED:
        return "unacknowledged"
    executor = execution.executor
    if executor is None or not executor.can_reverse:
        audit_record(
            actor=None,
            actor_label="system:actions",
            verb="reversal.unsupported",
            obj=item,
            after={"executor": executor.name if executor else None},
        )
        return "irreversible"
    # The reversal goes out only once the action's own delivery is acknowledged (held until then).
    state = DeliveryState.PENDING if execution.state == DeliveryState.DELIVERED else DeliveryState.HELD
    now = timezone.now()
    reversal = _execution_row(item.event_id, DeliveryKind.REVERSE)
    types = selectors.action_types_of(source_id=item.source_id)
    action_type = types.get(execution.action) or ActionType(name=execution.action, label=execution.action, severity=0)
    if reversal is None:
        reversal = _action_row_create(
            kind=DeliveryKind.REVERSE,
            item=item,
            action_type=action_type,
            executor=executor,
            reason=reason,
            appeal=appeal,
            state=state,
        )
        if reversal is None:
            return "reversal"  # a concurrent overturn made it
    elif reversal.state == DeliveryState.CANCELLED:
        Delivery.objects.filter(pk=reversal.pk, state=DeliveryState.CANCELLED).update(state=state, next_attempt_at=now)
    else:
        return "reversal"
    audit_record(
        actor=None,
        actor_label="system:actions",
        verb="reversal.request",
        obj=item,
        after={"delivery": reversal.pk, "state": state},
    )
    if state == DeliveryState.PENDING:
        _enqueue_after_commit([reversal.pk])
    return "reversal"


def _subscribers(*, topic: str, source_id: int | None) -> list[Subscription]:
    subs = Subscription.objects.filter(active=True).filter(Q(source__isnull=True) | Q(source_id=source_id))
    return [s for s in subs if topic in (s.topics or [])]


def topic_publish(*, topic: str, source_id: int | None, key: str, payload: dict[str, Any]) -> list[int]:
    """Write one delivery per active subscription to topic (for this source or all sources)."""
    return topic_publish_many(topic=topic, source_id=source_id, events=[(key, payload)])


def topic_publish_many(*, topic: str, source_id: int | None, events: list[tuple[str, dict[str, Any]]]) -> list[int]:
    """topic_publish for many (key, payload) pairs at once: one bulk insert for a scoring batch."""
    subs = _subscribers(topic=topic, source_id=source_id)
    if not subs or not events:
        return []
    now = timezone.now()
    rows = []
    for sub in subs:
        for key, payload in events:
            idem = f"secai-sub{sub.pk}-{topic}-{key}"
            body = _dumps({"topic": topic, "idempotency_key": idem, "created_at": now.isoformat(), **payload})
            rows.append(
                Delivery(
                    kind=DeliveryKind.EVENT,
                    subscription=sub,
                    source_id=source_id,
                    topic=topic,
                    idempotency_key=idem,
                    body=body,
                    max_attempts=sub.max_attempts,
                    next_attempt_at=now,
                )
            )
    # A key already written (a redelivered scoring message cannot re-open an item, but a retried
    # hook could publish twice) is skipped by the unique idempotency key.
    Delivery.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)
    ids = list(
        Delivery.objects.filter(idempotency_key__in=[r.idempotency_key for r in rows], attempts=0).values_list("id", flat=True)
    )
    _enqueue_after_commit(ids)
    return ids


def _item_payload(item: ReviewItem) -> dict[str, Any]:
    return {
        "source": item.source.name,
        "item": {
            "id": item.pk,
            "state": item.state,
            "kind": item.kind,
            "proposed_action": item.proposed_action,
            "mode": item.mode,
            "score": item.score,
        },
        "event": _event_payload(item.event),
    }


# ---------------------------------------------------------------- hooks called by the review side


@transaction.atomic(savepoint=False)  # joins the caller's transaction, or opens one
def items_opened(*, source_id: int, event_ids: list[int], acting: bool | None = None) -> None:
    """Review items were just created for these events (inside the scoring transaction): execute
    the act-then-review ones at once and tell the item.opened subscribers. `acting`, when the
    caller knows, says whether any of them was opened in act-then-review mode."""
    if not event_ids:
        return
    wants_topic = bool(_subscribers(topic=Topic.ITEM_OPENED, source_id=source_id))
    acting_items = ReviewItem.objects.filter(event_id__in=event_ids, mode=Mode.ACT_THEN_REVIEW)
    if not wants_topic and not (acting if acting is not None else acting_items.exists()):
        return
    types = selectors.action_types_of(source_id=source_id)
    qs = ReviewItem.objects.filter(event_id__in=event_ids) if wants_topic else acting_items
    opened, executions = [], []
    for item in qs.select_related("event", "source"):
        if item.mode == Mode.ACT_THEN_REVIEW:
            row = execution_request(
                item=item, action_type=types.get(item.proposed_action), reason="act_then_review", enqueue=False
            )
            if row is not None:
                executions.append(row.pk)
        if wants_topic:
            opened.append((str(item.pk), _item_payload(item)))
    _enqueue_after_commit(executions)  # one message per 50 executions, not one per item
    topic_publish_many(topic=Topic.ITEM_OPENED, source_id=source_id, events=opened)


@transaction.atomic(savepoint=False)  # joins the caller's transaction, or opens one
def item_decided(*, item: ReviewItem, verdict: str, record: Verdict | None, by: str) -> None:
    """An item was decided (by reviewers, an admin, or a deadline's default): act on the outcome.

    Approve executes the action unless the item was opened in shadow mode; overturn cancels an
    action not yet sent or reverses one that was executed. An open appeal on the event is closed
    with the outcome, and item.decided / appeal.decided subscribers are told."""
    item = ReviewItem.objects.select_related("event", "source").get(pk=item.pk)
    appeal = Appeal.objects.select_for_update().filter(event_id=item.event_id, state=AppealState.OPEN).first()
    action_type = selectors.action_types_of(source_id=item.source_id).get(item.proposed_action)
    if verdict == VerdictChoice.APPROVE:
        if item.mode != Mode.SHADOW:
            execution_request(item=item, action_type=action_type, reason="appeal_upheld" if appeal else by)
    else:
        execution_withdraw(item=item, reason="appeal" if appeal else by, appeal=appeal)
    key = f"{item.pk}-{record.pk if record else 'deadline'}"
    payload = {**_item_payload(item), "verdict": verdict, "decided_by": by, "reason": record.reason if record else ""}
    topic_publish(topic=Topic.ITEM_DECIDED, source_id=item.source_id, key=key, payload=payload)
    if appeal is not None:
        outcome = AppealState.UPHELD if verdict == VerdictChoice.APPROVE else AppealState.OVERTURNED
        Appeal.objects.filter(pk=appeal.pk, state=AppealState.OPEN).update(
            state=outcome, final_verdict=record, decided_at=timezone.now()
        )
        audit_record(actor=None, actor_label="system:appeals", verb="appeal.decide", obj=appeal, after={"state": outcome})
        topic_publish(
            topic=Topic.APPEAL_DECIDED,
            source_id=item.source_id,
            key=str(appeal.pk),
            payload={**payload, "appeal": {"id": appeal.pk, "external_id": appeal.external_id, "state": outcome}},
        )


def verdict_undone(*, item: ReviewItem, verdict: Verdict) -> None:
    """A reviewer took back a verdict: withdraw what it asked for, if that has not been sent yet,
    and reopen the appeal it decided. What was sent stands until the next verdict says otherwise."""
    for appeal in Appeal.objects.filter(final_verdict=verdict):
        Appeal.objects.filter(pk=appeal.pk).update(state=AppealState.OPEN, final_verdict=None, decided_at=None)
        audit_record(actor=None, actor_label="system:appeals", verb="appeal.reopen", obj=appeal, after={"why": "verdict undone"})
    for kind in (DeliveryKind.EXECUTE, DeliveryKind.REVERSE):
        wanted = kind == DeliveryKind.EXECUTE if verdict.verdict == VerdictChoice.APPROVE else kind == DeliveryKind.REVERSE
        if not wanted or (kind == DeliveryKind.EXECUTE and item.mode == Mode.ACT_THEN_REVIEW):
            continue
        cancelled = Delivery.objects.filter(
            event_id=item.event_id, kind=kind, attempts=0, state__in=[DeliveryState.PENDING, DeliveryState.HELD]
        ).update(state=DeliveryState.CANCELLED)
        if cancelled:
            audit_record(
                actor=None, actor_label="system:actions", verb=f"{kind}.cancel", obj=item, after={"why": "verdict undone"}
            )


def model_promoted(*, model) -> None:
    topic_publish(
        topic=Topic.MODEL_PROMOTED,
        source_id=model.source_id,
        key=f"{model.pk}-{int(model.promoted_at.timestamp() * 1000) if model.promoted_at else 0}",
        payload={
            "source": model.source.name,
            "model": {"id": model.pk, "version": model.version, "algorithm": model.algorithm, "promoted_by": model.promoted_by},
        },
    )


# ---------------------------------------------------------------- sending


def _backoff(attempts: int) -> float:
    base = settings.SECAI_DELIVERY_BACKOFF_SECONDS
    return min(settings.SECAI_DELIVERY_BACKOFF_MAX_SECONDS, base * 2 ** max(0, attempts - 1))


def delivery_attempt(*, delivery_id: int) -> str:
    """Send one delivery if it is due and nobody else holds it; record the outcome. Returns what
    happened: "delivered", "retry", "failed", "cancelled" or "skipped".

    The claim is a compare-and-set (pending and due, or sending with an expired lease: its worker
    died), so a duplicated or redelivered message sends nothing. The HTTP call runs outside any
    transaction; its result is written only if this attempt still holds the row (same attempt
    number), so a worker that lost its lease cannot overwrite a newer attempt's outcome."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.SECAI_DELIVERY_LEASE_SECONDS)
    won = (
        Delivery.objects.filter(pk=delivery_id)
        .filter(Q(state=DeliveryState.PENDING, next_attempt_at__lte=now) | Q(state=DeliveryState.SENDING, lease_until__lt=now))
        .update(state=DeliveryState.SENDING, lease_until=lease, attempts=F("attempts") + 1)
    )
    if not won:
        early = Delivery.objects.filter(pk=delivery_id, state=DeliveryState.PENDING, next_attempt_at__gt=now).first()
        if early is not None and (early.next_attempt_at - now).total_seconds() < 60:
            # A retry's message arrived before its time (clocks, rounding): come back then.
            deliveries_enqueue([delivery_id], countdown=(early.next_attempt_at - now).total_seconds() + 0.05)
        return "skipped"
    row = Delivery.objects.select_related("executor", "subscription", "event").get(pk=delivery_id)
    # The first attempt, and the first after a retry by hand, look at the allow list again: an
    # entity listed since then is not actioned.
    first_of_run = row.attempts == 1 or bool(row.log and "retry_by" in row.log[-1])
    if row.kind == DeliveryKind.EXECUTE and first_of_run and row.event is not None:
        if selectors.entity_allowlisted(source_id=row.source_id, entity=row.event.entity):
            with transaction.atomic():
                if Delivery.objects.filter(pk=row.pk, state=DeliveryState.SENDING, attempts=row.attempts).update(
                    state=DeliveryState.CANCELLED, lease_until=None, last_error="entity on the allow list"
                ):
                    audit_record(
                        actor=None,
                        actor_label="system:actions",
                        verb="action.skip",
                        obj=row,
                        after={"why": "entity on the allow list"},
                    )
            return "cancelled"
    result = outbound.send(row)
    done = timezone.now()
    entry = {"attempt": row.attempts, "at": done.isoformat(), "status": result.status, "error": result.error[:200]}
    log = [*row.log, entry][-MAX_LOG_ENTRIES:]
    mine = Delivery.objects.filter(pk=row.pk, state=DeliveryState.SENDING, attempts=row.attempts)
    with transaction.atomic():
        if result.ok:
            if not mine.update(
                state=DeliveryState.DELIVERED,
                delivered_at=done,
                lease_until=None,
                last_status=result.status,
                last_error="",
                log=log,
            ):
                return "skipped"
            if row.kind == DeliveryKind.EXECUTE:
                # An overturn arrived while the action was in flight: its reversal may go now.
                held = list(
                    Delivery.objects.filter(
                        event_id=row.event_id, kind=DeliveryKind.REVERSE, state=DeliveryState.HELD
                    ).values_list("id", flat=True)
                )
                Delivery.objects.filter(pk__in=held, state=DeliveryState.HELD).update(
                    state=DeliveryState.PENDING, next_attempt_at=done
                )
                _enqueue_after_commit(held)
            return "delivered"
        if row.attempts >= row.max_attempts:
            if not mine.update(
                state=DeliveryState.FAILED, lease_until=None, last_status=result.status, last_error=result.error, log=log
            ):
                return "skipped"
            if row.kind == DeliveryKind.EXECUTE:
                # Never acknowledged, so never executed as far as we know: nothing to reverse.
                Delivery.objects.filter(event_id=row.event_id, kind=DeliveryKind.REVERSE, state=DeliveryState.HELD).update(
                    state=DeliveryState.CANCELLED
                )
            audit_record(
                actor=None,
                actor_label="system:actions",
                verb="delivery.failed",
                obj=row,
                after={"attempts": row.attempts, "status": result.status, "error": result.error[:200]},
            )
            logger.warning("delivery %s given up after %d attempts: %s", row.idempotency_key, row.attempts, result.error[:200])
            return "failed"
        delay = _backoff(row.attempts)
        if not mine.update(
            state=DeliveryState.PENDING,
            next_attempt_at=done + timedelta(seconds=delay),
            lease_until=None,
            last_status=result.status,
            last_error=result.error,
            log=log,
        ):
            return "skipped"
        transaction.on_commit(lambda: deliveries_enqueue([row.pk], countdown=delay + 0.05))
    return "retry"


def deliveries_attempt(*, delivery_ids: list[int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pk in delivery_ids:
        outcome = delivery_attempt(delivery_id=pk)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def deliveries_sweep(*, limit: int = 2000) -> int:
    """Re-enqueue what a lost message or a dead worker left behind: deliveries pending and due for
    longer than SECAI_SWEEP_AFTER_SECONDS (younger ones still have their own message on the way),
    and deliveries whose sender's lease has run out."""
    now = timezone.now()
    overdue = now - timedelta(seconds=settings.SECAI_SWEEP_AFTER_SECONDS)
    ids = list(
        Delivery.objects.filter(
            Q(state=DeliveryState.PENDING, next_attempt_at__lte=overdue) | Q(state=DeliveryState.SENDING, lease_until__lt=now)
        )
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    if ids:
        deliveries_enqueue(ids)
    return len(ids)


def delivery_retry(*, delivery: Delivery, actor) -> Delivery:
    """An admin sends a failed delivery again (the retry button). The attempt count goes on (the
    receiver sees X-SecAI-Attempt 3 after two failed attempts, and the log keeps them): the retry
    adds the target's current attempt budget to max_attempts and is marked in the log. The
    idempotency key stays, so a receiver that did apply an earlier attempt applies nothing twice."""
    with transaction.atomic():
        row = Delivery.objects.select_for_update().get(pk=delivery.pk)
        if row.state != DeliveryState.FAILED:
            raise ItemConflict(f"only a failed delivery can be retried; this one is {row.state}", field="state")
        if row.kind == DeliveryKind.EXECUTE and row.withdrawn:
            raise ItemConflict("this action was overturned after it failed; it is not sent again", field="state")
        target = row.executor if row.executor_id else row.subscription
        budget = target.max_attempts if target is not None else row.max_attempts
        now = timezone.now()
        marker = {"attempt": row.attempts, "at": now.isoformat(), "retry_by": _label(actor)}
        Delivery.objects.filter(pk=row.pk, state=DeliveryState.FAILED).update(
            state=DeliveryState.PENDING,
            max_attempts=row.attempts + budget,
            retries=F("retries") + 1,
            log=[*row.log, marker][-MAX_LOG_ENTRIES:],
            next_attempt_at=now,
            last_error="",
        )
        audit_record(
            actor=actor,
            verb="delivery.retry",
            obj=row,
            before={"state": row.state, "attempts": row.attempts, "max_attempts": row.max_attempts},
            after={"max_attempts": row.attempts + budget, "retries": row.retries + 1},
        )
        _enqueue_after_commit([row.pk])
    row.refresh_from_db()
    return row


# ---------------------------------------------------------------- deadlines


def _past_deadline(*, source_id: int, action: str, minutes: int, now: datetime):
    """Items a deadline fallback takes: open (or held under an expired claim) for longer than
    `minutes`; appeals always wait for a person."""
    return (
        ReviewItem.objects.filter(source_id=source_id, proposed_action=action, created_at__lte=now - timedelta(minutes=minutes))
        .filter(Q(state=ReviewState.OPEN) | Q(state=ReviewState.CLAIMED, claim_expires_at__lt=now))
        .exclude(kind=ItemKind.APPEAL)
    )


def items_past_deadline(*, action_type: ActionType, now: datetime | None = None) -> int:
    """How many items the action type's fallback takes at its next run (0 when it waits): what an
    admin sees before and after changing a deadline, since a new short deadline takes the backlog."""
    if action_type.deadline_fallback == Fallback.WAIT or not action_type.deadline_minutes or action_type.pk is None:
        return 0
    return _past_deadline(
        source_id=action_type.source_id,
        action=action_type.name,
        minutes=action_type.deadline_minutes,
        now=now or timezone.now(),
    ).count()


def deadlines_apply(*, now: datetime | None = None, chunk: int = 500, budget_seconds: float | None = None) -> int:
    """Apply each action type's deadline fallback to its open items older than deadline_minutes,
    oldest first, in chunks, until none is left or the time budget (SECAI_DEADLINE_BUDGET_SECONDS,
    under beat's one-minute interval) is spent. One chunk per action type and round, so a large
    backlog of one type does not hold another's due items back; the next run goes on where this one
    stopped. Items someone holds under a live claim are left alone."""
    now = now or timezone.now()
    budget = settings.SECAI_DEADLINE_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    stop_at = time.monotonic() + budget
    applied = 0
    pending = list(ActionType.objects.filter(deadline_minutes__isnull=False).exclude(deadline_fallback=Fallback.WAIT))
    while pending and time.monotonic() < stop_at:
        for at in list(pending):
            ids = list(
                _past_deadline(source_id=at.source_id, action=at.name, minutes=at.deadline_minutes, now=now)
                .order_by("created_at")
                .values_list("id", flat=True)[:chunk]
            )
            for pk in ids:
                applied += _deadline_apply_one(item_id=pk, action_type=at, now=now)
                if time.monotonic() >= stop_at:
                    break
            if len(ids) < chunk:
                pending.remove(at)
            if time.monotonic() >= stop_at:
                break
    if pending and time.monotonic() >= stop_at:
        logger.warning("deadline fallbacks: time budget of %ss spent after %d items; the next run goes on", budget, applied)
    return applied


def _deadline_apply_one(*, item_id: int, action_type: ActionType, now: datetime) -> int:
    takeable = Q(state=ReviewState.OPEN) | Q(state=ReviewState.CLAIMED, claim_expires_at__lt=now)
    with transaction.atomic():
        if action_type.deadline_fallback == Fallback.ESCALATE:
            won = (
                ReviewItem.objects.filter(pk=item_id)
                .filter(takeable)
                .update(state=ReviewState.ESCALATED, fallback="escalate", claimed_by=None, claim_expires_at=None)
            )
            after: dict[str, Any] = {"state": ReviewState.ESCALATED}
        else:
            won = (
                ReviewItem.objects.filter(pk=item_id)
                .filter(takeable)
                .update(
                    state=ReviewState.EXPIRED,
                    fallback=action_type.deadline_verdict,
                    decided_at=now,
                    claimed_by=None,
                    claim_expires_at=None,
                )
            )
            after = {"state": ReviewState.EXPIRED, "default_verdict": action_type.deadline_verdict}
        if not won:
            return 0
        item = ReviewItem.objects.select_related("event", "source").get(pk=item_id)
        audit_record(
            actor=None,
            actor_label="system:deadline",
            verb="item.deadline",
            obj=item,
            before={"state": ReviewState.OPEN},
            after={**after, "minutes": action_type.deadline_minutes, "action": action_type.name},
        )
        if action_type.deadline_fallback == Fallback.APPLY_DEFAULT:
            # No label: a default is not a person's judgement, so it does not train the model.
            Event.objects.filter(pk=item.event_id).update(status=EventStatus.DECIDED)
            item_decided(item=item, verdict=action_type.deadline_verdict, record=None, by="deadline")
    return 1


# ---------------------------------------------------------------- appeals


def _action_stands(item: ReviewItem) -> bool:
    if item.mode == Mode.SHADOW:
        return False  # nothing was done to anyone
    execution = Delivery.objects.filter(event_id=item.event_id, kind=DeliveryKind.EXECUTE).first()
    reversal = Delivery.objects.filter(event_id=item.event_id, kind=DeliveryKind.REVERSE).exclude(state=DeliveryState.CANCELLED)
    if reversal.exists():
        return False
    if execution is not None and execution.state != DeliveryState.CANCELLED and not execution.withdrawn:
        return True
    if item.state == ReviewState.EXPIRED:
        return item.fallback == VerdictChoice.APPROVE
    if item.state == ReviewState.DECIDED:
        latest = _live_verdicts(item).order_by("-created_at").first()
        return latest is not None and latest.verdict == VerdictChoice.APPROVE
    return False


def _live_verdicts(item: ReviewItem):
    qs = item.verdicts.filter(undone_at__isnull=True)
    return qs.filter(created_at__gte=item.reopened_at) if item.reopened_at else qs


def appeal_file(*, source: Source, external_id: str, event_external_id: str, statement: str, actor) -> tuple[Appeal, bool]:
    """Record an affected person's appeal and reopen the item at the top of the queue, linked to
    the verdict appealed against. Filing the same appeal (source, external_id) again returns the
    first one and changes nothing."""
    existing = Appeal.objects.filter(source=source, external_id=external_id).select_related("event").first()
    if existing is not None:
        if existing.event.external_id != event_external_id:
            raise ItemConflict("this appeal id was used for another event", field="external_id")
        return existing, False
    event = Event.objects.filter(source=source, external_id=event_external_id).first()
    if event is None:
        raise ServiceError(f"no event {event_external_id[:100]!r} in source {source.name}", field="event")
    now = timezone.now()
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update(of=("self",)).select_related("event", "source").filter(event=event).first()
        if item is None or not _action_stands(item):
            raise ItemConflict("no action stands on this event: there is nothing to appeal", field="event")
        if Appeal.objects.filter(event=event, state=AppealState.OPEN).exists():
            raise ItemConflict("an appeal on this event is already open", field="event")
        original = _live_verdicts(item).order_by("-created_at").first()
        try:
            with transaction.atomic():
                appeal = Appeal.objects.create(
                    source=source,
                    event=event,
                    item=item,
                    external_id=external_id,
                    statement=statement,
                    original_verdict=original,
                    filed_by=actor if getattr(actor, "is_authenticated", False) else None,
                )
        except IntegrityError:
            raced = Appeal.objects.filter(source=source, external_id=external_id).first()
            if raced is None:
                raise ItemConflict("an appeal on this event is already open", field="event")
            return raced, False
        changes: dict[str, Any] = {"kind": ItemKind.APPEAL, "priority": APPEAL_PRIORITY + float(item.score)}
        if item.state in (ReviewState.DECIDED, ReviewState.EXPIRED):
            changes.update(
                state=ReviewState.OPEN,
                reopened_at=now,
                decided_at=None,
                claimed_by=None,
                claim_expires_at=None,
                required_verdicts=1,
                fallback="",
            )
            Event.objects.filter(pk=event.pk).update(status=EventStatus.QUEUED)
        ReviewItem.objects.filter(pk=item.pk).update(**changes)
        audit_record(
            actor=actor,
            verb="appeal.file",
            obj=item,
            before={"state": item.state},
            after={"appeal": appeal.pk, "external_id": external_id, "original_verdict": original.pk if original else None},
        )
        item.refresh_from_db()
        topic_publish(
            topic=Topic.APPEAL_OPENED,
            source_id=source.pk,
            key=str(appeal.pk),
            payload={**_item_payload(item), "appeal": {"id": appeal.pk, "external_id": external_id, "state": appeal.state}},
        )
    return appeal, True
