"""Serializers of the models registry API."""

from rest_framework import serializers

from models_registry.models import LearningSettings, ModelVersion, MonitoringSnapshot
from models_registry.services import LEARNING_FIELDS, cron_parse
from models_registry.tuning import MAX_COST
from reviews.services import ServiceError
from secai.serializers import RefuseUnknownFields


class ModelVersionSerializer(serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "source",
            "version",
            "algorithm",
            "params",
            "feature_schema",
            "training_manifest",
            "sha256",
            "metrics",
            "validation_report",
            "status",
            "status_reason",
            "triggered_by",
            "promoted_by",
            "created_at",
            "started_at",
            "finished_at",
            "promoted_at",
            "error",
            "history",
        ]


class ReasonSerializer(RefuseUnknownFields, serializers.Serializer):
    reason = serializers.CharField(max_length=500)


class LearningSettingsSerializer(RefuseUnknownFields, serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="name", read_only=True)
    audit_sample_rate = serializers.FloatField(min_value=0.0, max_value=1.0, source="source.policy.audit_sample_rate")
    periodic_task = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = LearningSettings
        fields = [
            "source",
            *LEARNING_FIELDS,
            "audit_sample_rate",
            "periodic_task",
            "propose_only_reason",
            "propose_only_since",
            "updated_at",
            "updated_by",
        ]
        read_only_fields = ["source", "periodic_task", "propose_only_reason", "propose_only_since", "updated_at", "updated_by"]

    def validate_retrain_schedule(self, value: str) -> str:
        value = " ".join((value or "").split())
        try:
            cron_parse(value)
        except ServiceError as exc:
            raise serializers.ValidationError(exc.message) from exc
        return value


class MonitoringSnapshotSerializer(serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="name", read_only=True)
    model_version = serializers.SlugRelatedField(slug_field="version", read_only=True)

    class Meta:
        model = MonitoringSnapshot
        fields = [
            "id",
            "source",
            "model_version",
            "created_at",
            "window_start",
            "window_end",
            "events_scored",
            "score_psi",
            "max_attribute_psi",
            "attribute_psi",
            "decided",
            "overturned",
            "overturn_rate",
            "overturn_by_day",
            "missed_threat",
            "alerts",
            "notes",
            "switched_to_propose_only",
        ]


class TuningQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=90, default=30)
    goal = serializers.ChoiceField(choices=["cost", "targets"], default="cost")
    cost_missed = serializers.FloatField(min_value=0, max_value=MAX_COST, required=False)
    cost_review = serializers.FloatField(min_value=0, max_value=MAX_COST, required=False, default=0.0)
    cost_step_up = serializers.FloatField(min_value=0, max_value=MAX_COST, required=False)
    cost_deny = serializers.FloatField(min_value=0, max_value=MAX_COST, required=False)
    cost_block = serializers.FloatField(min_value=0, max_value=MAX_COST, required=False)
    target_recall = serializers.FloatField(min_value=0, max_value=1, required=False)
    target_step_up = serializers.FloatField(min_value=0, max_value=1, required=False)
    target_deny = serializers.FloatField(min_value=0, max_value=1, required=False)
    target_block = serializers.FloatField(min_value=0, max_value=1, required=False)

    def costs(self) -> dict:
        d = self.validated_data
        return {
            "missed": d.get("cost_missed"),
            "review": d.get("cost_review", 0.0),
            **{a: d.get(f"cost_{a}") for a in ("step_up", "deny", "block")},
        }

    def targets(self) -> dict:
        d = self.validated_data
        return {"recall": d.get("target_recall"), **{a: d.get(f"target_{a}") for a in ("step_up", "deny", "block")}}
