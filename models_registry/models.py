"""Model versions: one row per training run, from start to retirement."""

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
