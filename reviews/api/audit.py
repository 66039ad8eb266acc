"""REST API v1 for the audit trail: read-only, for administrators, cursor-paginated and filterable."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.pagination import CursorPagination

from reviews.api.permissions import IsAdmin
from reviews.dashboard import audit_entry_list
from reviews.models import AuditEntry


class AuditEntrySerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_label", read_only=True)

    class Meta:
        model = AuditEntry
        fields = ["id", "created_at", "actor", "actor_id", "verb", "object_type", "object_id", "before", "after"]
        read_only_fields = fields


class AuditQuerySerializer(serializers.Serializer):
    actor = serializers.CharField(required=False, max_length=150)
    verb = serializers.CharField(required=False, max_length=64)
    object_type = serializers.CharField(required=False, max_length=64)
    object_id = serializers.CharField(required=False, max_length=64)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    bulk = serializers.CharField(required=False, max_length=64)

    def validate(self, attrs):
        if "since" in attrs and "until" in attrs and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": "must be later than since"})
        return attrs


class AuditCursorPagination(CursorPagination):
    ordering = "-id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("actor", str, description="username of the actor, or a system label such as system:retrain"),
            OpenApiParameter("verb", str, description="exact verb, e.g. item.decide"),
            OpenApiParameter("object_type", str, description="e.g. reviews.reviewitem"),
            OpenApiParameter("object_id", str),
            OpenApiParameter("since", str, description="ISO 8601; entries at or after it"),
            OpenApiParameter("until", str, description="ISO 8601; entries before it"),
            OpenApiParameter("bulk", str, description="a bulk decision's id: its items' entries and its summary"),
        ]
    )
)
class AuditEntryViewSet(viewsets.ReadOnlyModelViewSet):
    """The append-only audit trail, newest first. There is no way to change or remove an entry."""

    serializer_class = AuditEntrySerializer
    permission_classes = [IsAdmin]
    pagination_class = AuditCursorPagination

    def get_queryset(self):
        if self.action != "list":
            return AuditEntry.objects.all()
        params = AuditQuerySerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        return audit_entry_list(**params.validated_data)
