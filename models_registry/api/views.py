"""REST API v1 for model versions, training runs, learning settings, monitoring, threshold tuning
and the export of labelled data."""

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from models_registry import monitoring, selectors, services, tuning
from models_registry.api.serializers import (
    LearningSettingsSerializer,
    ModelVersionSerializer,
    MonitoringSnapshotSerializer,
    ReasonSerializer,
    TuningQuerySerializer,
)
from models_registry.models import ModelVersion
from models_registry.tasks import training_request
from models_registry.views import export_response
from reviews.api.permissions import IsAdmin, IsReviewer
from reviews.models import Source
from reviews.selectors import scoped_to_reviewer
from secai.api import takes_no_body


@extend_schema(parameters=[OpenApiParameter("source", str)])
class ModelVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = ModelVersionSerializer
    permission_classes = [IsReviewer]

    def list(self, request, *args, **kwargs):
        # The list leaves out the bulky figures (plot curves, drift histograms); a version's detail
        # has them all.
        response = super().list(request, *args, **kwargs)
        for row in response.data:
            (row.get("validation_report") or {}).pop("curves", None)
            (row.get("training_manifest") or {}).pop("drift_reference", None)
        return response

    def get_queryset(self):
        qs = ModelVersion.objects.select_related("source").order_by("-created_at", "-id")
        qs = scoped_to_reviewer(qs, viewer=self.request.user)  # a reviewer sees the models of the sources they review
        if self.request.query_params.get("source"):
            qs = qs.filter(source__name=self.request.query_params["source"])
        return qs

    @extend_schema(request=ReasonSerializer, responses={200: ModelVersionSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsAdmin])
    def promote(self, request, pk=None):
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        model = services.model_promote(model=self.get_object(), actor=request.user, reason=data.validated_data["reason"])
        return Response(ModelVersionSerializer(model).data)

    @extend_schema(request=ReasonSerializer, responses={200: ModelVersionSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsAdmin])
    def rollback(self, request, pk=None):
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        model = services.model_rollback(model=self.get_object(), actor=request.user, reason=data.validated_data["reason"])
        return Response(ModelVersionSerializer(model).data)


class RetrainApi(APIView):
    """Start a training run for a source; 202 with the run, 409 if one is already running."""

    permission_classes = [IsAdmin]

    @extend_schema(request=None, responses={202: ModelVersionSerializer})
    @takes_no_body
    def post(self, request, name: str):
        source = get_object_or_404(Source, name=name)
        model = training_request(source=source, triggered_by=request.user.get_username(), actor=request.user)
        return Response(ModelVersionSerializer(model).data, status=status.HTTP_202_ACCEPTED)


class LearningSettingsApi(APIView):
    """A source's learning settings: training minimums, retraining triggers and schedule,
    monitoring limits, propose-only flag, audit sample rate (kept on the policy)."""

    permission_classes = [IsAdmin]

    @extend_schema(responses={200: LearningSettingsSerializer})
    def get(self, request, name: str):
        source = get_object_or_404(Source.objects.select_related("policy"), name=name)
        return Response(LearningSettingsSerializer(selectors.learning_settings_get(source=source)).data)

    @extend_schema(request=LearningSettingsSerializer, responses={200: LearningSettingsSerializer})
    def patch(self, request, name: str):
        source = get_object_or_404(Source.objects.select_related("policy"), name=name)
        data = LearningSettingsSerializer(selectors.learning_settings_get(source=source), data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        rate = changes.pop("source", {}).get("policy", {}).get("audit_sample_rate")
        learning = services.learning_settings_update(source=source, actor=request.user, audit_sample_rate=rate, **changes)
        source.policy.refresh_from_db()
        return Response(LearningSettingsSerializer(learning).data)


class MonitoringApi(APIView):
    """GET: the source's latest monitoring snapshots (newest first). POST: compute one now."""

    permission_classes = [IsAdmin]

    @extend_schema(
        parameters=[OpenApiParameter("limit", int, description="at most this many snapshots (1-200, default 30)")],
        responses={200: MonitoringSnapshotSerializer(many=True)},
    )
    def get(self, request, name: str):
        source = get_object_or_404(Source, name=name)
        try:
            limit = min(max(int(request.query_params.get("limit", 30)), 1), 200)
        except ValueError:
            limit = 30
        return Response(MonitoringSnapshotSerializer(selectors.monitoring_history(source=source, limit=limit), many=True).data)

    @extend_schema(request=None, responses={201: MonitoringSnapshotSerializer})
    @takes_no_body
    def post(self, request, name: str):
        source = get_object_or_404(Source, name=name)
        snapshot = monitoring.monitoring_snapshot_create(source=source)
        return Response(MonitoringSnapshotSerializer(snapshot).data, status=status.HTTP_201_CREATED)


class TuningApi(APIView):
    """Recommended thresholds for costs (goal=cost) or targets (goal=targets), with what the current
    and the recommended thresholds would have done over the last `days` days. Read-only: apply with
    PATCH /sources/{name}/policy/."""

    permission_classes = [IsAdmin]

    @extend_schema(parameters=[TuningQuerySerializer], responses={200: OpenApiTypes.OBJECT})
    def get(self, request, name: str):
        source = get_object_or_404(Source, name=name)
        query = TuningQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        result = tuning.tuning_run(
            source=source,
            days=query.validated_data["days"],
            goal=query.validated_data["goal"],
            costs=query.costs(),
            targets=query.targets(),
        )
        data = result["data"]
        return Response(
            {
                "source": source.name,
                "days": query.validated_data["days"],
                "days_covered": data.days,
                "events": data.events_total,
                "labels_used": int(len(data.labelled_y)),
                "champion_version": data.champion_version,
                "recommended": {
                    "review_threshold": result["recommended"]["review_threshold"],
                    "thresholds": [{"action": a, "min_score": t} for a, t in result["recommended"]["thresholds"].items()],
                },
                "current": result["current"],
                "proposed": result["proposed"],
                "notes": result["notes"],
            }
        )


class LabelledDataExportApi(APIView):
    """The labelled events of a source as CSV (formula cells neutralised) or Parquet."""

    permission_classes = [IsAdmin]

    def perform_content_negotiation(self, request, force=False):
        # The body is a file, not a rendered object; errors still come back as JSON.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY),
            (200, "application/vnd.apache.parquet"): OpenApiResponse(OpenApiTypes.BINARY),
        }
    )
    def get(self, request, name: str, fmt: str):
        source = get_object_or_404(Source, name=name)
        return export_response(source=source, fmt=fmt, actor=request.user)
