"""REST API v1 for model versions and training runs."""

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from models_registry import services
from models_registry.models import ModelVersion
from models_registry.tasks import train_model
from reviews.api.permissions import IsAdmin, IsReviewer
from reviews.models import Source


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
        ]


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500)


@extend_schema(parameters=[OpenApiParameter("source", str)])
class ModelVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = ModelVersionSerializer
    permission_classes = [IsReviewer]

    def get_queryset(self):
        qs = ModelVersion.objects.select_related("source").order_by("-created_at", "-id")
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
    def post(self, request, name: str):
        source = get_object_or_404(Source, name=name)
        with transaction.atomic():
            model = services.training_start(source=source, triggered_by=request.user.get_username(), actor=request.user)
            transaction.on_commit(lambda: train_model.delay(model.pk))
        return Response(ModelVersionSerializer(model).data, status=status.HTTP_202_ACCEPTED)
