from django.contrib import admin

from models_registry.models import ModelVersion


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
