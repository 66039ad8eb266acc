"""Serializers of the actions API. Secrets are write-only: responses carry only their hint."""

from rest_framework import serializers

from actions.choices import DeliveryState, ExecutorKind, Fallback, ListKind, Mode, Topic
from actions.models import ActionType, Appeal, Delivery, Executor, ListEntry, Subscription
from reviews import roles
from reviews.choices import VerdictChoice
from reviews.models import Source
from reviews.selectors import verdict_hidden
from secai.serializers import RefuseUnknownFields, SlugRelatedField


class ExecutorSerializer(RefuseUnknownFields, serializers.ModelSerializer):
    kind = serializers.ChoiceField(choices=ExecutorKind.choices, default=ExecutorKind.WEBHOOK)
    secret = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=200, help_text="HMAC key; never returned (see secret_hint)"
    )
    secret_hint = serializers.CharField(read_only=True)

    class Meta:
        model = Executor
        fields = [
            "id",
            "name",
            "kind",
            "url",
            "reversal_url",
            "secret",
            "secret_hint",
            "max_attempts",
            "timeout_seconds",
            "active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {"url": {"required": False}, "reversal_url": {"required": False}}


class ActionTypeSerializer(RefuseUnknownFields, serializers.ModelSerializer):
    source = SlugRelatedField(slug_field="name", queryset=Source.objects.all())
    executor = SlugRelatedField(slug_field="name", queryset=Executor.objects.all(), allow_null=True, required=False)
    mode = serializers.ChoiceField(choices=Mode.choices, default=Mode.PROPOSE)
    deadline_fallback = serializers.ChoiceField(choices=Fallback.choices, default=Fallback.WAIT)
    deadline_verdict = serializers.ChoiceField(choices=VerdictChoice.choices, required=False, allow_blank=True)
    items_past_deadline = serializers.SerializerMethodField(
        help_text="open items already past the deadline, which the fallback escalates or decides at its next run (every minute)"
    )

    class Meta:
        model = ActionType
        fields = [
            "id",
            "source",
            "name",
            "label",
            "severity",
            "executor",
            "mode",
            "deadline_minutes",
            "deadline_fallback",
            "deadline_verdict",
            "items_past_deadline",
            "builtin",
            "updated_at",
        ]
        read_only_fields = ["id", "builtin", "updated_at", "items_past_deadline"]
        validators: list = []  # uniqueness is checked by the service, with the error shape of the API

    def get_items_past_deadline(self, obj: ActionType) -> int:
        from actions.services import items_past_deadline

        return items_past_deadline(action_type=obj)


class SubscriptionSerializer(RefuseUnknownFields, serializers.ModelSerializer):
    secret = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=200)
    secret_hint = serializers.CharField(read_only=True)
    topics = serializers.ListField(child=serializers.ChoiceField(choices=Topic.choices), min_length=1)
    source = SlugRelatedField(slug_field="name", queryset=Source.objects.all(), allow_null=True, required=False)

    class Meta:
        model = Subscription
        fields = ["id", "name", "url", "secret", "secret_hint", "topics", "source", "max_attempts", "timeout_seconds", "active"]
        read_only_fields = ["id"]


class DeliverySerializer(serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="name", read_only=True)
    target = serializers.CharField(source="target_name", read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "kind",
            "topic",
            "source",
            "event",
            "item",
            "action",
            "target",
            "idempotency_key",
            "state",
            "withdrawn",
            "attempts",
            "max_attempts",
            "retries",
            "next_attempt_at",
            "last_status",
            "last_error",
            "log",
            "created_at",
            "delivered_at",
            "body",
        ]
        read_only_fields = fields


class DeliveryStateQuery(serializers.Serializer):
    state = serializers.ChoiceField(choices=DeliveryState.choices, required=False)


class ListEntrySerializer(RefuseUnknownFields, serializers.ModelSerializer):
    source = SlugRelatedField(slug_field="name", queryset=Source.objects.all())
    kind = serializers.ChoiceField(choices=ListKind.choices)
    active = serializers.SerializerMethodField()
    updated = serializers.SerializerMethodField(
        help_text="in a POST's answer: the entity was already on this list, and its entry was updated"
    )

    class Meta:
        model = ListEntry
        fields = [
            "id",
            "source",
            "kind",
            "entity",
            "action",
            "reason",
            "expires_at",
            "created_at",
            "created_by",
            "removed_at",
            "removed_by",
            "active",
            "updated",
        ]
        read_only_fields = ["id", "created_at", "created_by", "removed_at", "removed_by", "active", "updated"]
        validators: list = []

    def get_updated(self, obj: ListEntry) -> bool:
        return bool(getattr(obj, "updated", False))

    def get_active(self, obj: ListEntry) -> bool:
        from django.utils import timezone

        return obj.removed_at is None and (obj.expires_at is None or obj.expires_at > timezone.now())


class AppealInSerializer(RefuseUnknownFields, serializers.Serializer):
    source = serializers.CharField(max_length=64)
    event = serializers.CharField(max_length=200, help_text="the external_id of the event the action was taken on")
    appeal_id = serializers.CharField(max_length=200, help_text="the client system's id of this appeal (idempotency)")
    statement = serializers.CharField(max_length=4000, required=False, allow_blank=True, default="")

    def validate_statement(self, value: str) -> str:
        if "\x00" in value:
            raise serializers.ValidationError("must not contain NUL characters")
        return value


class AppealSerializer(serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="name", read_only=True)
    event = serializers.SlugRelatedField(slug_field="external_id", read_only=True)
    appeal_id = serializers.CharField(source="external_id", read_only=True)
    original_verdict = serializers.SerializerMethodField()
    final_verdict = serializers.SerializerMethodField()

    class Meta:
        model = Appeal
        fields = [
            "id",
            "appeal_id",
            "source",
            "event",
            "item",
            "state",
            "statement",
            "original_verdict",
            "final_verdict",
            "created_at",
            "decided_at",
        ]
        read_only_fields = fields

    def get_original_verdict(self, obj: Appeal) -> dict | None:
        return self._verdict(obj, obj.original_verdict)

    def get_final_verdict(self, obj: Appeal) -> dict | None:
        return self._verdict(obj, obj.final_verdict)

    def _verdict(self, obj: Appeal, v) -> dict | None:
        """The verdict, or for a reviewer who may be deciding the reopened item, only that there is
        one (blind second opinions: reviews.selectors.verdicts_blind). Client systems and admins
        see it."""
        if v is None:
            return None
        viewer = self.context.get("viewer")
        if (
            viewer is not None
            and roles.is_reviewer(viewer)
            and verdict_hidden(verdict=v, item_state=obj.item.state, viewer=viewer)
        ):
            return {"id": v.pk, "verdict": None, "reason": None, "hidden": True}
        return {"id": v.pk, "verdict": v.verdict, "reason": v.reason, "hidden": False}
