"""Executors, action types per source, allow and block lists, appeals, outbound subscriptions, and
the delivery outbox through which every call to the outside world goes."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from actions.choices import AppealState, DeliveryKind, DeliveryState, ExecutorKind, Fallback, ListKind, Mode, Topic
from reviews.choices import VerdictChoice


def secret_hint(secret: str) -> str:
    """What pages and the API show of a secret: never more than its last four characters."""
    return f"…{secret[-4:]}" if len(secret) >= 16 else ("set" if secret else "")


class Executor(models.Model):
    """Where an approved action goes: a signed webhook, or the worker's log."""

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=ExecutorKind.choices, default=ExecutorKind.WEBHOOK)
    url = models.URLField(max_length=500, blank=True, help_text="http(s) URL the action is POSTed to")
    reversal_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="http(s) URL of the reversal call (e.g. unblock); blank: this executor cannot reverse",
    )
    # Kept in clear because HMAC needs it; shown only as secret_hint.
    secret = models.CharField(max_length=200, blank=True)
    max_attempts = models.PositiveSmallIntegerField(default=8, validators=[MinValueValidator(1), MaxValueValidator(50)])
    timeout_seconds = models.FloatField(default=10.0, validators=[MinValueValidator(0.5), MaxValueValidator(120)])
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name

    @property
    def secret_hint(self) -> str:
        return secret_hint(self.secret)

    @property
    def can_reverse(self) -> bool:
        return self.kind == ExecutorKind.LOG or bool(self.reversal_url)


class ActionType(models.Model):
    """An action a source's policy can propose, with how (executor) and how autonomously (mode)."""

    source = models.ForeignKey("reviews.Source", on_delete=models.CASCADE, related_name="action_types")
    # The policy's thresholds and every event's proposed_action refer to this name.
    name = models.SlugField(max_length=16)
    label = models.CharField(max_length=100)
    severity = models.PositiveSmallIntegerField(
        validators=[MaxValueValidator(100)], help_text="orders actions (a higher threshold needs a higher severity) and the queue"
    )
    executor = models.ForeignKey(Executor, null=True, blank=True, on_delete=models.PROTECT, related_name="action_types")
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.PROPOSE)
    deadline_minutes = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="minutes an open item may wait for a reviewer"
    )
    deadline_fallback = models.CharField(max_length=16, choices=Fallback.choices, default=Fallback.WAIT)
    deadline_verdict = models.CharField(max_length=16, choices=VerdictChoice.choices, blank=True)
    builtin = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["source_id", "severity", "name"]
        constraints = [models.UniqueConstraint(fields=["source", "name"], name="action_type_unique_name")]

    def __str__(self) -> str:
        return f"{self.source} {self.name}"


class ListEntry(models.Model):
    """An entity on a source's allow list (never actioned) or block list (always reviewed, with at
    least `action` proposed). Entries expire; removing one keeps the row, with who and when."""

    source = models.ForeignKey("reviews.Source", on_delete=models.CASCADE, related_name="list_entries")
    kind = models.CharField(max_length=8, choices=ListKind.choices)
    entity = models.CharField(max_length=200)
    action = models.SlugField(max_length=16, blank=True, help_text="block list: the action proposed at least")
    reason = models.TextField(blank=True, max_length=2000)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150)
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["source_id", "kind", "entity"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "kind", "entity"], condition=Q(removed_at__isnull=True), name="list_one_live_entry"
            )
        ]
        indexes = [models.Index(fields=["source", "entity"], name="list_entry_lookup")]

    def __str__(self) -> str:
        return f"{self.kind} {self.entity} ({self.source})"


class Appeal(models.Model):
    """An affected person's appeal against an action on an event, forwarded by the client system."""

    source = models.ForeignKey("reviews.Source", on_delete=models.PROTECT, related_name="appeals")
    event = models.ForeignKey("reviews.Event", on_delete=models.PROTECT, related_name="appeals")
    item = models.ForeignKey("reviews.ReviewItem", on_delete=models.PROTECT, related_name="appeals")
    external_id = models.CharField(max_length=200, help_text="the client system's id of the appeal: resubmitting it is harmless")
    statement = models.TextField(blank=True, max_length=4000)
    state = models.CharField(max_length=16, choices=AppealState.choices, default=AppealState.OPEN)
    original_verdict = models.ForeignKey(
        "reviews.Verdict", null=True, blank=True, on_delete=models.PROTECT, related_name="appealed_by"
    )
    final_verdict = models.ForeignKey("reviews.Verdict", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    filed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="appeal_unique_external_id"),
            models.UniqueConstraint(fields=["event"], condition=Q(state="open"), name="appeal_one_open_per_event"),
        ]

    def __str__(self) -> str:
        return f"appeal {self.external_id} on {self.event_id}"


class Subscription(models.Model):
    """An outbound webhook: item opened, item decided, model promoted, appeals; signed like executors."""

    name = models.SlugField(max_length=64, unique=True)
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=200)
    topics = models.JSONField(default=list, help_text=f"any of {', '.join(Topic.values)}")
    source = models.ForeignKey(
        "reviews.Source", null=True, blank=True, on_delete=models.CASCADE, related_name="+", help_text="blank: every source"
    )
    max_attempts = models.PositiveSmallIntegerField(default=8, validators=[MinValueValidator(1), MaxValueValidator(50)])
    timeout_seconds = models.FloatField(default=10.0, validators=[MinValueValidator(0.5), MaxValueValidator(120)])
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    @property
    def secret_hint(self) -> str:
        return secret_hint(self.secret)


class Delivery(models.Model):
    """One call to the outside world, written in the transaction that decided it (the outbox), then
    sent by a task on the `actions` queue. State changes are compare-and-set updates; unique
    constraints allow one execution and one reversal per event, whatever retries or redos happen."""

    kind = models.CharField(max_length=16, choices=DeliveryKind.choices)
    event = models.ForeignKey("reviews.Event", null=True, blank=True, on_delete=models.PROTECT, related_name="deliveries")
    item = models.ForeignKey("reviews.ReviewItem", null=True, blank=True, on_delete=models.PROTECT, related_name="deliveries")
    source = models.ForeignKey("reviews.Source", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=16, blank=True)
    executor = models.ForeignKey(Executor, null=True, blank=True, on_delete=models.PROTECT, related_name="deliveries")
    subscription = models.ForeignKey(Subscription, null=True, blank=True, on_delete=models.PROTECT, related_name="deliveries")
    topic = models.CharField(max_length=32, blank=True)
    # Sent as the Idempotency-Key header on every attempt: the receiver applies each key once.
    idempotency_key = models.CharField(max_length=200, unique=True)
    body = models.TextField()  # the exact bytes that are signed and sent, the same on every attempt
    state = models.CharField(max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    # Set on an execution when its verdict was overturned: not retried by hand, reversed once acknowledged.
    withdrawn = models.BooleanField(default=False)
    # Cumulative over the delivery's life: a retry by hand adds a new budget to max_attempts instead
    # of starting the count over, so the history and X-SecAI-Attempt keep counting.
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=8)
    retries = models.PositiveSmallIntegerField(default=0)  # how often an admin sent it again after it failed
    next_attempt_at = models.DateTimeField()
    lease_until = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # [{"attempt", "at", "status", "error"}], and {"attempt", "at", "retry_by"} where an admin retried it
    log = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["event"], condition=Q(kind="execute"), name="delivery_one_execution_per_event"),
            models.UniqueConstraint(fields=["event"], condition=Q(kind="reverse"), name="delivery_one_reversal_per_event"),
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="delivery_due"),
            models.Index(fields=["state", "-id"], name="delivery_state_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.idempotency_key} ({self.state})"

    @property
    def target_name(self) -> str:
        if self.executor_id:
            return self.executor.name
        if self.subscription_id:
            return self.subscription.name
        return ""
