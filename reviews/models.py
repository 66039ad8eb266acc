"""Sources, events, policies, review items, verdicts, labels and the audit trail."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from reviews.choices import (
    HELD_STATES,
    Action,
    AttributeType,
    EventStatus,
    ItemKind,
    LabelOrigin,
    ReasonApplies,
    ReviewState,
    VerdictChoice,
)


class Source(models.Model):
    """A stream of events sharing one attribute schema: {"name": "numeric"|"categorical"|"boolean"|"text"}."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    schema = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    # API clients (users in the api_clients group) allowed to submit to and read this source.
    api_clients = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="submit_sources")
    # Reviewers who see and decide this source's items. Admins see every source without being listed.
    reviewers = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="review_sources",
        help_text="Reviewers who may see and decide this source's review items. Admins see every source.",
    )

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not isinstance(self.schema, dict) or not self.schema:
            raise ValidationError({"schema": "must be a non-empty object of attribute name to type"})
        bad = {k: v for k, v in self.schema.items() if v not in AttributeType.values}
        if bad:
            raise ValidationError({"schema": f"unknown attribute types: {bad}"})


def default_thresholds() -> list[dict]:
    return [
        {"action": Action.STEP_UP.value, "min_score": 0.5},
        {"action": Action.DENY.value, "min_score": 0.8},
    ]


class Policy(models.Model):
    """Score thresholds mapping a score to a proposed action, and when a human must look."""

    source = models.OneToOneField(Source, on_delete=models.CASCADE, related_name="policy")
    # Ordered by min_score ascending; a score takes the action of the highest threshold it reaches,
    # and "allow" below all of them.
    thresholds = models.JSONField(default=default_thresholds)
    review_threshold = models.FloatField(default=0.5)
    # Share of events below the review threshold sent to the queue anyway, so that reviewers'
    # verdicts on them estimate how many threats the model misses.
    audit_sample_rate = models.FloatField(default=0.0)
    # Actions that need two agreeing verdicts from different reviewers (four-eyes).
    four_eyes_actions = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return f"policy of {self.source}"

    @staticmethod
    def thresholds_below_review(review_threshold: float, thresholds: list[dict]) -> list[dict]:
        """The action thresholds under the review threshold. An action is never proposed without
        review, so the policy form, the API and the Django admin refuse a policy with any."""
        return [t for t in thresholds if float(t["min_score"]) < float(review_threshold)]

    def clean(self) -> None:
        try:
            low = self.thresholds_below_review(self.review_threshold, self.thresholds)
        except (TypeError, KeyError, ValueError):
            raise ValidationError({"thresholds": "each threshold needs an action and a min_score"}) from None
        if low:
            raise ValidationError(
                {"thresholds": f"action thresholds must be at or above the review threshold {self.review_threshold:g}"}
            )

    def action_for(self, score: float) -> str:
        """The proposed action of a score: "allow" below the review threshold, since an action is
        never proposed without review, else the action of the highest threshold it reaches."""
        action = Action.ALLOW.value
        if score < self.review_threshold:
            return action
        for rule in sorted(self.thresholds, key=lambda r: r["min_score"]):
            if score >= rule["min_score"]:
                action = rule["action"]
        return action

    def actions_for(self, scores) -> list[str]:
        """action_for over an array of scores at once (the scoring batch's path)."""
        import numpy as np

        rules = sorted(self.thresholds, key=lambda r: r["min_score"])
        names = [Action.ALLOW.value, *(rule["action"] for rule in rules)]
        # How many thresholds each score reaches picks the last rule it reaches, as in action_for.
        scores = np.asarray(scores, dtype=float)
        reached = np.searchsorted(np.asarray([rule["min_score"] for rule in rules], dtype=float), scores, side="right")
        # Below the review threshold nothing is queued, so nothing but "allow" is proposed.
        reached[scores < self.review_threshold] = 0
        return [names[i] for i in reached.tolist()]


class Event(models.Model):
    # No index of its own: (source, status) and (source, external_id) both lead with it.
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="events", db_index=False)
    external_id = models.CharField(max_length=200)
    # Indexed by event_entity (below) alone: its pattern operator class serves both equality and
    # the console's prefix search, so an update or insert maintains one entity index, not two.
    entity = models.CharField(max_length=200)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    attributes = models.JSONField()
    status = models.CharField(max_length=16, choices=EventStatus.choices, default=EventStatus.RECEIVED)
    score = models.FloatField(null=True, blank=True)
    model_version = models.ForeignKey(
        "models_registry.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="scored_events"
    )
    proposed_action = models.CharField(max_length=16, choices=Action.choices, blank=True)
    explanation = models.JSONField(null=True, blank=True)
    scored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "external_id"], name="event_unique_external_id")]
        indexes = [
            models.Index(fields=["status", "received_at"], name="event_status_received"),
            models.Index(fields=["source", "status"], name="event_source_status"),
            models.Index(fields=["entity"], name="event_entity", opclasses=["varchar_pattern_ops"]),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id}"


class ReviewItem(models.Model):
    # One review item per event: a duplicate scoring delivery cannot queue the event twice.
    event = models.OneToOneField(Event, on_delete=models.CASCADE, related_name="review_item")
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="review_items")
    proposed_action = models.CharField(max_length=16, choices=Action.choices)
    score = models.FloatField()
    priority = models.FloatField(db_index=True)
    state = models.CharField(max_length=16, choices=ReviewState.choices, default=ReviewState.OPEN)
    kind = models.CharField(max_length=16, choices=ItemKind.choices, default=ItemKind.FLAGGED)
    required_verdicts = models.PositiveSmallIntegerField(default=1)
    # The autonomy mode of the proposed action when the item was opened (shadow, propose,
    # act_then_review): an item keeps the mode it was opened in, whatever the admin switches later.
    mode = models.CharField(max_length=16, default="propose")
    # What the deadline fallback did to this item ("", "approve", "overturn", "escalate").
    fallback = models.CharField(max_length=16, blank=True)
    # Set when an appeal reopened the item: only verdicts given after it count towards the new decision.
    reopened_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="claimed_items"
    )
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "-priority", "created_at"], name="item_queue_order")]
        constraints = [
            # One held item per reviewer (a claim, or an escalation an admin is working on),
            # enforced by the database so that parallel claim-next calls of one reviewer (two
            # tabs, a double click) cannot leave them holding two items.
            models.UniqueConstraint(fields=["claimed_by"], condition=Q(state__in=HELD_STATES), name="item_one_hold_per_reviewer"),
        ]

    def __str__(self) -> str:
        return f"review of {self.event}"

    # A claim is a lock with an expiry, and the sweeper that reopens expired claims runs only
    # once a minute: the page must not call a claim that has run out "claimed".
    @property
    def claim_live(self) -> bool:
        return self.claimed_by_id is not None and self.claim_expires_at is not None and self.claim_expires_at >= timezone.now()

    @property
    def claim_expired(self) -> bool:
        return (
            self.state in HELD_STATES
            and self.claimed_by_id is not None
            and self.claim_expires_at is not None
            and self.claim_expires_at < timezone.now()
        )

    @property
    def display_state(self) -> str:
        """The state a reviewer should read: a claimed item whose claim has expired is open."""
        return ReviewState.OPEN if self.state == ReviewState.CLAIMED and self.claim_expired else self.state


class ItemSkip(models.Model):
    """A reviewer passed on an item: claim-next does not hand it to them again until `until`.
    Others get it as usual."""

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="skips")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="item_skips")
    until = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["reviewer", "item"], name="item_skip_one_per_reviewer")]

    def __str__(self) -> str:
        return f"{self.reviewer} skipped {self.item_id} until {self.until:%H:%M:%S}"


class ReasonCode(models.Model):
    """Admin-editable reasons a reviewer gives for a verdict."""

    code = models.SlugField(max_length=32, unique=True)
    label = models.CharField(max_length=100)
    applies_to = models.CharField(max_length=8, choices=ReasonApplies.choices, default=ReasonApplies.BOTH)
    active = models.BooleanField(default=True)
    order = models.PositiveSmallIntegerField(default=100)

    class Meta:
        ordering = ["order", "code"]

    def __str__(self) -> str:
        return self.label


class Verdict(models.Model):
    item = models.ForeignKey(ReviewItem, on_delete=models.PROTECT, related_name="verdicts")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="verdicts")
    verdict = models.CharField(max_length=16, choices=VerdictChoice.choices)
    reason = models.CharField(max_length=32)  # a ReasonCode.code, kept as text so history survives edits
    note = models.TextField(blank=True, max_length=4000)
    created_at = models.DateTimeField(auto_now_add=True)
    undone_at = models.DateTimeField(null=True, blank=True)  # set when the reviewer undid it

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["item", "reviewer"], condition=Q(undone_at__isnull=True), name="verdict_one_live_per_reviewer"
            )
        ]

    def __str__(self) -> str:
        return f"{self.verdict} by {self.reviewer} on {self.item_id}"


class Label(models.Model):
    """Ground truth for training. One per event: the latest verdict (or the import) wins."""

    event = models.OneToOneField(Event, on_delete=models.CASCADE, related_name="label")
    is_threat = models.BooleanField()
    origin = models.CharField(max_length=16, choices=LabelOrigin.choices)
    weight = models.FloatField(default=1.0)
    verdict = models.ForeignKey(Verdict, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["origin"], name="label_origin")]

    def __str__(self) -> str:
        return f"{'threat' if self.is_threat else 'benign'} ({self.origin}) for event {self.event_id}"


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):  # type: ignore[override]
        raise PermissionError("audit entries are append-only")

    def delete(self):  # type: ignore[override]
        raise PermissionError("audit entries are append-only")


class AuditEntry(models.Model):
    """Append-only record of who did what. The application offers no way to change or remove one."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    actor_label = models.CharField(max_length=150)  # "alice", or "system:retrain" for tasks
    verb = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.verb} {self.object_type}:{self.object_id}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise PermissionError("audit entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):  # type: ignore[override]
        raise PermissionError("audit entries are append-only")
