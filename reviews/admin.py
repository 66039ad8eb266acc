"""Django admin: sources and policies are editable; events, items and verdicts are read-only here
(they change only through the services); the audit trail can be read, never changed."""

from axes.models import AccessAttempt, AccessLog
from django.contrib import admin
from django.contrib.auth import get_user_model

from reviews import roles, services
from reviews.models import AuditEntry, Event, Label, Policy, ReasonCode, ReviewItem, Source, Verdict


class RoleAdmin(admin.ModelAdmin):
    """Members of the admins group manage these models whatever their Django model permissions."""

    def has_module_permission(self, request):
        return roles.is_admin(request.user)

    def has_view_permission(self, request, obj=None):
        return roles.is_admin(request.user)

    def has_change_permission(self, request, obj=None):
        return roles.is_admin(request.user)

    def has_add_permission(self, request):
        return roles.is_admin(request.user)

    def has_delete_permission(self, request, obj=None):
        return False  # nothing here is deleted through the application


# The Django admin opens to the application's admins (superusers or the admins group).
admin.site.has_permission = lambda request: roles.is_admin(request.user)


class ReadOnlyAdmin(RoleAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Source)
class SourceAdmin(RoleAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    filter_horizontal = ["api_clients", "reviewers"]

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        # Offer only the users who hold the role the list is for; admins see every source anyway.
        group = {"reviewers": roles.REVIEWERS, "api_clients": roles.API_CLIENTS}.get(db_field.name)
        if group:
            kwargs["queryset"] = get_user_model().objects.filter(groups__name=group).order_by("username")
        return super().formfield_for_manytomany(db_field, request, **kwargs)


@admin.register(ReasonCode)
class ReasonCodeAdmin(RoleAdmin):
    """Reason codes are edited here. Deleting one is not offered: verdicts keep their code, so
    retire a reason by unticking "active" instead."""

    list_display = ["code", "label", "applies_to", "active", "order"]
    list_editable = ["label", "applies_to", "active", "order"]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Policy)
class PolicyAdmin(RoleAdmin):
    list_display = ["source", "review_threshold", "thresholds", "audit_sample_rate", "updated_at"]

    def has_add_permission(self, request):
        return False  # a policy is created with its source

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        services.policy_update(
            policy=obj,
            actor=request.user,
            thresholds=obj.thresholds,
            review_threshold=obj.review_threshold,
            audit_sample_rate=obj.audit_sample_rate,
        )


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["id", "source", "external_id", "entity", "status", "score", "proposed_action", "received_at"]
    list_filter = ["source", "status", "proposed_action"]
    search_fields = ["external_id", "entity"]
    show_full_result_count = False


@admin.register(ReviewItem)
class ReviewItemAdmin(ReadOnlyAdmin):
    list_display = ["id", "source", "state", "proposed_action", "score", "claimed_by", "created_at"]
    list_filter = ["state", "source", "proposed_action"]


@admin.register(Verdict)
class VerdictAdmin(ReadOnlyAdmin):
    list_display = ["id", "item", "reviewer", "verdict", "reason", "created_at"]
    list_filter = ["verdict", "reason"]


@admin.register(Label)
class LabelAdmin(ReadOnlyAdmin):
    list_display = ["event", "is_threat", "origin", "created_at"]
    list_filter = ["origin", "is_threat"]
    show_full_result_count = False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_label", "verb", "object_type", "object_id"]
    list_filter = ["verb"]
    search_fields = ["actor_label", "object_id"]


@admin.register(AccessAttempt)
class LoginAttemptAdmin(ReadOnlyAdmin):
    """Failed logins per username and address (django-axes). A pair at the failure limit is locked
    out for the cool-off time; "Unlock" ends that early, on the audit trail."""

    list_display = ["username", "ip_address", "failures_since_start", "attempt_time", "path_info"]
    search_fields = ["username", "ip_address"]
    actions = ["unlock"]

    @admin.action(description="Unlock the selected username and address pairs")
    def unlock(self, request, queryset):
        count = services.login_lockouts_clear(attempt_ids=list(queryset.values_list("pk", flat=True)), actor=request.user)
        self.message_user(request, f"{count} login lock(s) removed.")


@admin.register(AccessLog)
class LoginLogAdmin(ReadOnlyAdmin):
    list_display = ["username", "ip_address", "attempt_time", "logout_time", "path_info"]
    search_fields = ["username", "ip_address"]
