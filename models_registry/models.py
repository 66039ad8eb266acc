"""Model versions (one row per training run, from start to retirement), each source's learning
settings, and the monitoring snapshots that watch its champion."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from models_registry.choices import Algorithm, ModelStatus


class ModelVersion(models.Model):
    source = models.ForeignKey("reviews.Source", on_delete=models.PROTECT, related_name="model_versions")
    version = models.PositiveIntegerField()
    algorithm = models.CharField(max_length=32, choices=Algorithm.choices, blank=True)
    params = models.JSONField(default=dict, blank=True)
    feature_schema = models.JSONField(default=dict, blank=True)
    training_manifest = models.JSONField(default=dict, blank=True)
    artifact_path = models.CharField(max_length=500, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    validation_report = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=ModelStatus.choices, default=ModelStatus.TRAINING)
    status_reason = models.TextField(blank=True)
    triggered_by = models.CharField(max_length=150, blank=True)
    promoted_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    log = models.TextField(blank=True)
    # Every status change of this row: [{"at", "status", "by", "reason"}], so the row itself says who
    # promoted, rejected or retired it and why (the audit trail says the same, across all objects).
    history = models.JSONField(default=list, blank=True)
    # Set when the model file failed its sha256 check (a worker refused to load it, or the periodic
    # check found it changed) and cleared when it checks out again; admins see it as an alert.
    integrity_failed_at = models.DateTimeField(null=True, blank=True)
    integrity_error = models.TextField(blank=True)

    class Meta:
        ordering = ["source_id", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["source", "version"], name="model_unique_version"),
            # The database, not the application, guarantees one champion per source, so two
            # concurrent promotions cannot both succeed.
            models.UniqueConstraint(
                fields=["source"], condition=Q(status=ModelStatus.CHAMPION), name="model_one_champion_per_source"
            ),
            # At most one training run in flight per source, even with a duplicated beat.
            models.UniqueConstraint(
                fields=["source"], condition=Q(status=ModelStatus.TRAINING), name="model_one_training_per_source"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source.name} v{self.version} ({self.status})"

    @property
    def gate_rejected(self) -> bool:
        return (self.validation_report or {}).get("decision") == "reject"

    @property
    def promotion_over_gate(self) -> dict | None:
        """The latest promotion of a model the gate rejected ({"at", "by", "reason"}), so pages can
        show the gate's own reason next to the admin's instead of one replacing the other."""
        if not self.gate_rejected:
            return None
        promotions = [h for h in self.history or [] if h.get("status") == ModelStatus.CHAMPION]
        return promotions[-1] if promotions else None


# Defaults of the learning settings come from settings.SECAI_*, read when a source's row is created,
# so a deployment sets its defaults in one place and an admin overrides them per source.


def _default_min_labels() -> int:
    return settings.SECAI_MIN_LABELS_PER_CLASS


def _default_min_cold_start_events() -> int:
    return settings.SECAI_MIN_COLD_START_EVENTS


def _default_min_pr_auc() -> float:
    return settings.SECAI_MIN_PR_AUC


def _default_max_fpr() -> float | None:
    return getattr(settings, "SECAI_MAX_FPR_AT_THRESHOLD", None)


def _default_retrain_after() -> int:
    return settings.SECAI_RETRAIN_AFTER_VERDICTS


SHARE = [MinValueValidator(0.0), MaxValueValidator(1.0)]


def _default_schedule() -> str:
    return getattr(settings, "SECAI_RETRAIN_SCHEDULE", "0 3 * * *")


class LearningSettings(models.Model):
    """How a source learns and when its model is considered deteriorating. Sources without a row use
    the installation defaults and the global nightly retraining."""

    source = models.OneToOneField("reviews.Source", on_delete=models.CASCADE, related_name="learning")
    min_labels_per_class = models.PositiveIntegerField(
        default=_default_min_labels,
        validators=[MinValueValidator(1)],
        help_text="supervised training needs at least this many threat and this many benign labels in its training part",
    )
    min_cold_start_events = models.PositiveIntegerField(
        default=_default_min_cold_start_events,
        # at most what a cold start reads (services.MAX_UNSUPERVISED_ROWS), or it could never train
        validators=[MinValueValidator(1), MaxValueValidator(50_000)],
        help_text="a cold-start (unsupervised) model is trained only from at least this many events",
    )
    min_pr_auc = models.FloatField(
        default=_default_min_pr_auc, validators=SHARE, help_text="a candidate below this held-out PR AUC is rejected"
    )
    max_fpr_at_threshold = models.FloatField(
        null=True,
        blank=True,
        default=_default_max_fpr,
        validators=SHARE,
        help_text="a candidate whose false-positive rate at the review threshold is above this is rejected (blank: no limit)",
    )
    retrain_after_verdicts = models.PositiveIntegerField(
        default=_default_retrain_after, help_text="start a training run after this many new verdicts (0: never)"
    )
    retrain_schedule = models.CharField(
        max_length=100,
        blank=True,
        default=_default_schedule,
        help_text='cron "minute hour day-of-month month day-of-week" in UTC, e.g. "0 3 * * *"; the minute must be one '
        'number from 0 to 59 (at most one run an hour: "*/30" or "0,30" is refused); blank: no scheduled retraining',
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    monitoring_window_days = models.PositiveSmallIntegerField(
        default=7, validators=[MinValueValidator(1), MaxValueValidator(90)], help_text="recent events compared with training data"
    )
    score_psi_limit = models.FloatField(
        default=0.25, validators=[MinValueValidator(0.0)], help_text="alert when the score PSI is above this"
    )
    attribute_psi_limit = models.FloatField(
        default=0.25, validators=[MinValueValidator(0.0)], help_text="alert when any attribute's PSI is above this"
    )
    overturn_rate_limit = models.FloatField(
        default=0.5, help_text="alert when the share of flagged items overturned is above this"
    )
    missed_threat_limit = models.FloatField(
        default=0.02,
        validators=SHARE,
        help_text="alert when the estimated share of threats among events below the review threshold is above this",
    )
    min_alert_sample = models.PositiveIntegerField(
        default=30, help_text="rates from fewer decided items or audit samples than this never alert"
    )
    auto_propose_only = models.BooleanField(
        default=False, help_text="switch the source to propose-only automatically when an alert fires"
    )
    # Recorded flag, shown in the console: the model's proposals must not act on their own. (Nothing
    # acts without a reviewer yet; autonomy modes will read this flag.)
    propose_only = models.BooleanField(default=False)
    propose_only_reason = models.TextField(blank=True)
    propose_only_since = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, blank=True)

    class Meta:
        verbose_name_plural = "learning settings"

    def __str__(self) -> str:
        return f"learning settings of {self.source}"


class MonitoringSnapshot(models.Model):
    """One computation of a source's health: drift of the champion's scores and of the attributes
    against its training data, overturn rate per day, missed-threat estimate, and the alerts."""

    source = models.ForeignKey("reviews.Source", on_delete=models.CASCADE, related_name="monitoring_snapshots")
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    events_scored = models.PositiveIntegerField(default=0)
    score_psi = models.FloatField(null=True, blank=True)
    max_attribute_psi = models.FloatField(null=True, blank=True)
    attribute_psi = models.JSONField(default=dict, blank=True)
    score_bins = models.JSONField(default=dict, blank=True)
    decided = models.PositiveIntegerField(default=0)
    overturned = models.PositiveIntegerField(default=0)
    overturn_rate = models.FloatField(null=True, blank=True)
    overturn_by_day = models.JSONField(default=list, blank=True)
    missed_threat = models.JSONField(default=dict, blank=True)
    alerts = models.JSONField(default=list, blank=True)
    notes = models.JSONField(default=list, blank=True)
    switched_to_propose_only = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["source", "-created_at"], name="monitoring_source_recent")]

    def __str__(self) -> str:
        return f"monitoring of {self.source} at {self.created_at:%Y-%m-%d %H:%M}"
