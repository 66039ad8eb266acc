"""Django admin for the models registry: read-only, since promotion, rollback and learning
settings change through the console or the API, which audit them."""

from django.contrib import admin

from models_registry.models import LearningSettings, ModelVersion, MonitoringSnapshot
from reviews.admin import ReadOnlyAdmin


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ["source", "version", "status", "algorithm", "created_at", "promoted_by"]
    list_filter = ["source", "status"]


@admin.register(LearningSettings)
class LearningSettingsAdmin(ReadOnlyAdmin):
    list_display = ["source", "min_labels_per_class", "min_pr_auc", "retrain_schedule", "propose_only", "updated_by"]


@admin.register(MonitoringSnapshot)
class MonitoringSnapshotAdmin(ReadOnlyAdmin):
    list_display = ["source", "created_at", "score_psi", "max_attribute_psi", "overturn_rate"]
    list_filter = ["source"]
