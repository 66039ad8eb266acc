"""Django admin for actions: read-only, since every change goes through the console or the API,
which validate and audit it. Secrets are not shown here either, only their hint."""

from django.contrib import admin

from actions.models import ActionType, Appeal, Delivery, Executor, ListEntry, Subscription
from reviews.admin import ReadOnlyAdmin


@admin.register(Executor)
class ExecutorAdmin(ReadOnlyAdmin):
    list_display = ["name", "kind", "url", "reversal_url", "secret_hint", "max_attempts", "active"]
    exclude = ["secret"]
    readonly_fields = ["secret_hint"]


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    list_display = ["name", "url", "topics", "source", "secret_hint", "active"]
    exclude = ["secret"]
    readonly_fields = ["secret_hint"]


@admin.register(ActionType)
class ActionTypeAdmin(ReadOnlyAdmin):
    list_display = ["source", "name", "label", "severity", "executor", "mode", "deadline_minutes", "deadline_fallback"]
    list_filter = ["source", "mode"]


@admin.register(ListEntry)
class ListEntryAdmin(ReadOnlyAdmin):
    list_display = ["source", "kind", "entity", "action", "expires_at", "created_by", "removed_at"]
    list_filter = ["source", "kind"]
    search_fields = ["entity"]


@admin.register(Appeal)
class AppealAdmin(ReadOnlyAdmin):
    list_display = ["id", "source", "external_id", "event", "state", "created_at", "decided_at"]
    list_filter = ["source", "state"]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "topic", "action", "state", "attempts", "idempotency_key", "created_at"]
    list_filter = ["state", "kind"]
    search_fields = ["idempotency_key"]
    show_full_result_count = False
