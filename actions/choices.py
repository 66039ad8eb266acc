"""Enumerations of the actions app: executors, autonomy modes, deadline fallbacks, the delivery
outbox, allow and block lists, appeals and the topics of outbound events."""

from django.db import models


class ExecutorKind(models.TextChoices):
    WEBHOOK = "webhook", "signed webhook"
    LOG = "log", "log only"


class Mode(models.TextChoices):
    SHADOW = "shadow", "shadow"  # nothing is executed; items are only recorded
    PROPOSE = "propose", "propose"  # executed after a reviewer approves
    ACT_THEN_REVIEW = "act_then_review", "act, then review"  # executed at once, reversed on overturn


class Fallback(models.TextChoices):
    WAIT = "wait", "keep waiting"
    APPLY_DEFAULT = "apply_default", "apply a default verdict"
    ESCALATE = "escalate", "escalate to an admin"


class DeliveryKind(models.TextChoices):
    EXECUTE = "execute", "execute action"
    REVERSE = "reverse", "reverse action"
    EVENT = "event", "outbound event"


class DeliveryState(models.TextChoices):
    HELD = "held"  # a reversal waiting for its action's delivery to be acknowledged
    PENDING = "pending"  # due at next_attempt_at
    SENDING = "sending"  # a worker holds it until lease_until
    DELIVERED = "delivered"  # the receiver acknowledged it (2xx), or the log executor wrote it
    FAILED = "failed"  # given up after max_attempts; an admin can retry it
    CANCELLED = "cancelled"  # withdrawn before it was ever sent


class ListKind(models.TextChoices):
    ALLOW = "allow", "allow list"
    BLOCK = "block", "block list"


class AppealState(models.TextChoices):
    OPEN = "open"
    UPHELD = "upheld"  # the action stands
    OVERTURNED = "overturned"  # the action was wrong: reversed, label corrected


class Topic(models.TextChoices):
    ITEM_OPENED = "item.opened"
    ITEM_DECIDED = "item.decided"
    MODEL_PROMOTED = "model.promoted"
    APPEAL_OPENED = "appeal.opened"
    APPEAL_DECIDED = "appeal.decided"


# The actions every source starts with: (name, label, severity). They keep the REST contract of the
# fixed actions (policy thresholds name them) and admins may add more per source.
BUILTIN_ACTIONS = [
    ("allow", "allow", 0),
    ("step_up", "step-up authentication", 1),
    ("deny", "deny access", 2),
    ("block", "block entity", 3),
]
