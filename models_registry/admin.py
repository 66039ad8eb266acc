from django.contrib import admin

from models_registry.models import LearningSettings, ModelVersion, MonitoringSnapshot


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Read-only: promotion and rollback go through the console or the API, which audit them."""

    list_display = ["source", "version", "status", "algorithm", "created_at", "promoted_by"]
    list_filter = ["source", "status"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(LearningSettings)
class LearningSettingsAdmin(_ReadOnly):
    """Read-only: the console page and the API change these through the service, which keeps the
    retraining schedule in step and audits the change."""

    list_display = ["source", "min_labels_per_class", "min_pr_auc", "retrain_schedule", "propose_only", "updated_by"]


@admin.register(MonitoringSnapshot)
class MonitoringSnapshotAdmin(_ReadOnly):
    list_display = ["source", "created_at", "score_psi", "max_attribute_psi", "overturn_rate"]
    list_filter = ["source"]
