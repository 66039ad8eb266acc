"""Writing to the append-only audit trail."""

from typing import Any

from reviews.models import AuditEntry


def audit_record(
    *,
    actor,
    verb: str,
    obj: Any = None,
    before: Any = None,
    after: Any = None,
    actor_label: str = "",
    object_type: str = "",
    object_id: str = "",
) -> AuditEntry:
    """Append an entry about obj (a model instance), or about something that is no row, named by
    object_type and object_id (a bulk decision)."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    if obj is not None:
        object_type = obj._meta.label_lower if hasattr(obj, "_meta") else type(obj).__name__
        object_id = str(getattr(obj, "pk", obj))
    return AuditEntry.objects.create(
        actor=user,
        actor_label=actor_label or (user.get_username() if user else "system"),
        verb=verb,
        object_type=object_type,
        object_id=object_id,
        before=before,
        after=after,
    )
