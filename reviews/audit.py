"""Writing to the append-only audit trail."""

from typing import Any

from reviews.models import AuditEntry


def audit_record(*, actor, verb: str, obj: Any, before: Any = None, after: Any = None, actor_label: str = "") -> AuditEntry:
    user = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEntry.objects.create(
        actor=user,
        actor_label=actor_label or (user.get_username() if user else "system"),
        verb=verb,
        object_type=obj._meta.label_lower if hasattr(obj, "_meta") else type(obj).__name__,
        object_id=str(getattr(obj, "pk", obj)),
        before=before,
        after=after,
    )
