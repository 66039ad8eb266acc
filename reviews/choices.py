"""Enumerations shared by the review models, services and API."""

from django.db import models


class AttributeType(models.TextChoices):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    TEXT = "text"


class EventStatus(models.TextChoices):
    RECEIVED = "received"  # stored, waiting to be scored
    SCORED = "scored"  # transitional, never persisted for long
    CLEARED = "cleared"  # scored below the review threshold
    QUEUED = "queued"  # a review item is open for it
    DECIDED = "decided"  # a reviewer decided its review item
    HISTORICAL = "historical"  # imported labelled history: training data, never scored or queued


class Action(models.TextChoices):
    """Proposed actions, in increasing severity (the order of the members is the order of severity)."""

    ALLOW = "allow", "allow"
    STEP_UP = "step_up", "step-up authentication"
    DENY = "deny", "deny access"
    BLOCK = "block", "block entity"


ACTION_SEVERITY = {action.value: rank for rank, action in enumerate(Action)}


class ReviewState(models.TextChoices):
    OPEN = "open"
    CLAIMED = "claimed"
    DECIDED = "decided"
    ESCALATED = "escalated"
    EXPIRED = "expired"


# States in which claimed_by names who holds an item: a reviewer's claim, or an admin working on
# an escalation (which keeps its state, since only an admin may close it). A reviewer holds at most
# one item in these states at a time (a partial unique index).
HELD_STATES = (ReviewState.CLAIMED, ReviewState.ESCALATED)


class ItemKind(models.TextChoices):
    FLAGGED = "flagged", "flagged"  # scored at or above the review threshold
    AUDIT_SAMPLE = "audit_sample", "audit sample"  # a random event below the threshold, to estimate missed threats
    APPEAL = "appeal", "appeal"  # reopened because the affected person appealed


class ReasonApplies(models.TextChoices):
    APPROVE = "approve"
    OVERTURN = "overturn"
    BOTH = "both"


class VerdictChoice(models.TextChoices):
    APPROVE = "approve"  # the proposed action was right: a threat
    OVERTURN = "overturn"  # the proposed action was wrong: a false positive


# The reason codes a new installation starts with: (code, label, applies to). Admins edit them.
DEFAULT_REASONS = [
    ("confirmed_attack", "confirmed attack", "approve"),
    ("policy_violation", "policy violation", "approve"),
    ("suspicious_pattern", "suspicious pattern", "approve"),
    ("known_benign", "known benign activity", "overturn"),
    ("expected_behaviour", "expected behaviour of this entity", "overturn"),
    ("model_error", "model error", "overturn"),
    ("insufficient_evidence", "insufficient evidence", "overturn"),
    ("other", "other", "both"),
]


class LabelOrigin(models.TextChoices):
    VERDICT = "verdict"
    IMPORT = "import"
    APPEAL = "appeal"
    AUDIT_SAMPLE = "audit_sample"
