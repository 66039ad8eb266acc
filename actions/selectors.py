"""Reads for actions: a source's action types, who is on its lists, deliveries, appeals."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q, QuerySet
from django.utils import timezone

from actions.choices import BUILTIN_ACTIONS, ListKind, Mode
from actions.models import ActionType, Appeal, Delivery, ListEntry


def action_types_of(*, source_id: int) -> dict[str, ActionType]:
    """name -> ActionType of a source. A source created without the seeded rows (an old database,
    a test factory) still gets the built-in actions, in propose mode and without an executor."""
    types = {t.name: t for t in ActionType.objects.filter(source_id=source_id).select_related("executor")}
    for name, label, severity in BUILTIN_ACTIONS:
        if name not in types:
            types[name] = ActionType(
                source_id=source_id, name=name, label=label, severity=severity, builtin=True, mode=Mode.PROPOSE
            )
    return types


def severities_of(*, source_id: int) -> dict[str, int]:
    return {name: t.severity for name, t in action_types_of(source_id=source_id).items()}


def source_propose_only(*, source_id: int) -> bool:
    """Monitoring's switch: while it is on, act-then-review waits for a reviewer like propose."""
    from models_registry.models import LearningSettings

    return LearningSettings.objects.filter(source_id=source_id, propose_only=True).exists()


def _live(qs: QuerySet[ListEntry]) -> QuerySet[ListEntry]:
    now = timezone.now()
    return qs.filter(removed_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))


def entities_listed(*, source_id: int, entities: Iterable[str]) -> dict[str, dict[str, ListEntry]]:
    """{"allow": {entity: entry}, "block": {entity: entry}} for the live (unexpired) entries among entities."""
    out: dict[str, dict[str, ListEntry]] = {ListKind.ALLOW: {}, ListKind.BLOCK: {}}
    wanted = list(set(entities))
    for start in range(0, len(wanted), 900):
        for entry in _live(ListEntry.objects.filter(source_id=source_id, entity__in=wanted[start : start + 900])):
            out[entry.kind][entry.entity] = entry
    return out


def entity_allowlisted(*, source_id: int, entity: str) -> ListEntry | None:
    return _live(ListEntry.objects.filter(source_id=source_id, kind=ListKind.ALLOW, entity=entity)).first()


def list_entries(*, source=None, kind: str = "", include_inactive: bool = False, entity: str = "") -> QuerySet[ListEntry]:
    qs = ListEntry.objects.select_related("source").order_by("source__name", "kind", "entity", "-id")
    if source is not None:
        qs = qs.filter(source=source)
    if kind:
        qs = qs.filter(kind=kind)
    if entity:
        qs = qs.filter(entity=entity)
    return qs if include_inactive else _live(qs)


def deliveries(*, state: str = "", kind: str = "", source=None, event_id: int | None = None) -> QuerySet[Delivery]:
    qs = Delivery.objects.select_related("executor", "subscription", "source", "event").order_by("-id")
    if state:
        qs = qs.filter(state=state)
    if kind:
        qs = qs.filter(kind=kind)
    if source is not None:
        qs = qs.filter(source=source)
    if event_id is not None:
        qs = qs.filter(event_id=event_id)
    return qs


def appeals(*, source=None, state: str = "") -> QuerySet[Appeal]:
    qs = Appeal.objects.select_related("source", "event", "item").order_by("-id")
    if source is not None:
        qs = qs.filter(source=source)
    if state:
        qs = qs.filter(state=state)
    return qs
