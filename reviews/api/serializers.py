"""Input and output serializers of the review API."""

from django.contrib.auth import get_user_model
from rest_framework import serializers

from reviews.choices import VerdictChoice
from reviews.models import AttributeType, Event, Policy, ReviewItem, Source
from reviews.roles import REVIEWERS
from secai.serializers import RefuseUnknownFields, SlugRelatedField


class EventInSerializer(serializers.Serializer):
    """Documentation of one submitted event; validation is done by reviews.validation so that a
    batch reports every bad row by index."""

    external_id = serializers.CharField(max_length=200)
    occurred_at = serializers.DateTimeField(help_text="ISO 8601 with a time-zone offset")
    entity = serializers.CharField(max_length=200)
    attributes = serializers.DictField(help_text="Every attribute of the source's schema; null when unknown")


class EventBatchInSerializer(serializers.Serializer):
    source = serializers.CharField()
    events = EventInSerializer(
        many=True, required=False, help_text="1 to 5,000 events; or send one event's fields at the top level"
    )


class IngestedEventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    status = serializers.CharField()
    duplicate = serializers.BooleanField(required=False)


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    events = IngestedEventSerializer(many=True)


class ReviewSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField()
    verdict = serializers.CharField(allow_null=True)


class EventSerializer(serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="name", read_only=True)
    model_version = serializers.SerializerMethodField()
    review = serializers.SerializerMethodField()

    class Meta:
        model = Event
        fields = [
            "id",
            "source",
            "external_id",
            "entity",
            "occurred_at",
            "received_at",
            "attributes",
            "status",
            "score",
            "model_version",
            "proposed_action",
            "explanation",
            "scored_at",
            "review",
        ]

    def get_model_version(self, obj: Event) -> int | None:
        return obj.model_version.version if obj.model_version_id else None

    def get_review(self, obj: Event) -> dict | None:
        item = getattr(obj, "review_item", None)
        if item is None:
            return None
        verdict = (
            item.verdicts.order_by("-created_at").values_list("verdict", flat=True).first() if item.state == "decided" else None
        )
        return {"id": item.id, "state": item.state, "verdict": verdict}


class ReviewItemSerializer(serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="name", read_only=True)
    claimed_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    event = EventSerializer(read_only=True)
    mode = serializers.CharField(
        read_only=True, help_text="autonomy mode the item was opened in: shadow, propose, act_then_review"
    )
    execution = serializers.SerializerMethodField(help_text="state of the action's execution and reversal, if any")
    appeal = serializers.SerializerMethodField(help_text="the latest appeal on the event, if any")

    class Meta:
        model = ReviewItem
        fields = [
            "id",
            "source",
            "state",
            "kind",
            "required_verdicts",
            "proposed_action",
            "score",
            "priority",
            "claimed_by",
            "claim_expires_at",
            "created_at",
            "decided_at",
            "kind",
            "mode",
            "fallback",
            "execution",
            "appeal",
            "event",
        ]

    def get_execution(self, obj: ReviewItem) -> dict | None:
        rows = {d.kind: d for d in obj.deliveries.all() if d.kind in ("execute", "reverse")}
        if not rows:
            return None
        return {kind: {"id": d.pk, "state": d.state, "attempts": d.attempts, "action": d.action} for kind, d in rows.items()}

    def get_appeal(self, obj: ReviewItem) -> dict | None:
        appeals = sorted(obj.appeals.all(), key=lambda a: a.pk)
        if not appeals:
            return None
        a = appeals[-1]
        return {"id": a.pk, "appeal_id": a.external_id, "state": a.state, "original_verdict": a.original_verdict_id}


class DecisionInSerializer(RefuseUnknownFields, serializers.Serializer):
    verdict = serializers.ChoiceField(choices=VerdictChoice.choices)
    reason = serializers.CharField(max_length=32, help_text="an active reason code (GET /api/v1/reason-codes/)")
    note = serializers.CharField(required=False, allow_blank=True, max_length=4000, default="")
    allowlist_entity = serializers.BooleanField(
        required=False,
        default=False,
        help_text="overturn only: also put the event's entity on the source's allow list for SECAI_ALLOWLIST_DAYS days "
        "(90 by default): none of its events is actioned meanwhile",
    )

    def validate_reason(self, value: str) -> str:
        from reviews.services import reason_codes_for

        if value not in reason_codes_for():
            raise serializers.ValidationError("is not an active reason code")
        return value

    def validate(self, data: dict) -> dict:
        from reviews.services import reason_codes_for

        if data["reason"] not in reason_codes_for(verdict=data["verdict"]):
            raise serializers.ValidationError({"reason": f"is not a reason to {data['verdict']}"})
        return data

    def validate_note(self, value: str) -> str:
        if "\x00" in value:
            raise serializers.ValidationError("must not contain NUL characters")
        return value


class VerdictOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item = serializers.IntegerField(source="item_id")
    verdict = serializers.CharField()
    reason = serializers.CharField()
    note = serializers.CharField()
    reviewer = serializers.CharField(source="reviewer.username")
    created_at = serializers.DateTimeField()


class SourceSerializer(RefuseUnknownFields, serializers.ModelSerializer):
    schema = serializers.DictField(child=serializers.ChoiceField(choices=AttributeType.choices))
    # Who reviews the new source (usernames of reviewers). Write-only: API clients read sources
    # too and have no business knowing who reviews them; admins see assignments in the admin.
    reviewers = SlugRelatedField(
        many=True,
        slug_field="username",
        queryset=get_user_model().objects.filter(groups__name=REVIEWERS),
        required=False,
        write_only=True,
    )

    class Meta:
        model = Source
        fields = ["id", "name", "description", "schema", "created_at", "reviewers"]
        read_only_fields = ["id", "created_at"]

    def validate_schema(self, value: dict) -> dict:
        if not value:
            raise serializers.ValidationError("must name at least one attribute")
        for name in value:
            if not name or len(name) > 100 or "\x00" in name or name.startswith("_") or not name.isprintable():
                raise serializers.ValidationError(f"invalid attribute name {name[:100]!r}")
        return value


class ThresholdSerializer(serializers.Serializer):
    action = serializers.SlugField(max_length=16, help_text="one of the source's action types other than allow")
    min_score = serializers.FloatField(min_value=0.0, max_value=1.0)


class PolicySerializer(RefuseUnknownFields, serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="name", read_only=True)
    thresholds = ThresholdSerializer(many=True)
    review_threshold = serializers.FloatField(min_value=0.0, max_value=1.0)
    audit_sample_rate = serializers.FloatField(min_value=0.0, max_value=1.0)
    four_eyes_actions = serializers.ListField(child=serializers.SlugField(max_length=16))

    class Meta:
        model = Policy
        fields = ["source", "thresholds", "review_threshold", "audit_sample_rate", "four_eyes_actions", "updated_at"]
        read_only_fields = ["source", "updated_at"]

    def _severities(self) -> dict[str, int]:
        from actions.selectors import severities_of

        return {k: v for k, v in severities_of(source_id=self.instance.source_id).items() if v > 0}

    def validate_four_eyes_actions(self, value: list[str]) -> list[str]:
        known = self._severities()
        bad = [a for a in value if a not in known]
        if bad:
            raise serializers.ValidationError(f"unknown actions {bad}; this source's actions are {', '.join(known)}")
        return value

    def validate_thresholds(self, value: list[dict]) -> list[dict]:
        if not value:
            raise serializers.ValidationError("at least one action threshold is needed")
        actions = [t["action"] for t in value]
        if len(set(actions)) != len(actions):
            raise serializers.ValidationError("each action may appear once")
        known = self._severities()
        bad = [a for a in actions if a not in known]
        if bad:
            raise serializers.ValidationError(f"unknown actions {bad}; this source's actions are {', '.join(known)}")
        ordered = sorted(value, key=lambda t: t["min_score"])
        severities = [known[t["action"]] for t in ordered]
        if severities != sorted(severities):
            raise serializers.ValidationError("a more severe action needs a higher min_score")
        return [{"action": t["action"], "min_score": t["min_score"]} for t in ordered]

    def validate(self, attrs: dict) -> dict:
        # Whichever of the two this change sets, no action threshold may lie below the review one.
        review = attrs.get("review_threshold", self.instance.review_threshold if self.instance else None)
        thresholds = attrs.get("thresholds", self.instance.thresholds if self.instance else [])
        low = Policy.thresholds_below_review(review, thresholds) if review is not None else []
        if low:
            field = "thresholds" if "thresholds" in attrs else "review_threshold"
            listed = ", ".join(f"{t['action']} from {t['min_score']:g}" for t in low)
            raise serializers.ValidationError(
                {
                    field: f"action thresholds below the review threshold {review:g} ({listed}): an action is only proposed for events that are reviewed"
                }
            )
        return attrs
