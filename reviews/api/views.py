"""REST API v1 for events, review items, sources and policies."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions as drf_exceptions
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from reviews import roles, selectors, services
from reviews.api import serializers as s
from reviews.api.permissions import CanReadEvents, CanSubmitEvents, IsAdmin, IsReviewer, ReadReviewerWriteAdmin
from reviews.choices import EventStatus, ReviewState
from reviews.models import ReasonCode, ReviewItem, Source, Verdict
from reviews.validation import FieldError
from secai.api import takes_no_body


class IdCursorPagination(CursorPagination):
    ordering = "-id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class QueueCursorPagination(CursorPagination):
    ordering = selectors.QUEUE_ORDER
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


@extend_schema(
    parameters=[
        OpenApiParameter("source", str, description="source name"),
        OpenApiParameter("status", str),
        OpenApiParameter("entity", str),
    ]
)
class EventViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = s.EventSerializer
    permission_classes = [CanReadEvents]
    pagination_class = IdCursorPagination

    def get_permissions(self):
        if self.action == "create":
            return [CanSubmitEvents()]
        return [CanReadEvents()]

    def retrieve(self, request, *args, **kwargs):
        event = self.get_object()
        services.explanation_ensure(event)  # the explain queue may not have reached it yet
        return Response(self.get_serializer(event).data)

    @extend_schema(request=s.EventBatchInSerializer, responses={202: s.IngestResultSerializer})
    def create(self, request):
        """Submit one event or a batch of up to 5,000. All or nothing; duplicates reported, not stored."""
        body = request.data
        if not isinstance(body, dict):
            raise services.BatchInvalid([FieldError("body", "must be a JSON object")])
        source_name = body.get("source")
        if not isinstance(source_name, str) or not source_name:
            raise services.BatchInvalid([FieldError("source", "is required (the source's name)")])
        source = Source.objects.filter(name=source_name[:64]).first()
        if source is None or not roles.may_submit_to(request.user, source):
            # The same answer for a source that does not exist and one this client may not use,
            # so a client cannot probe which sources exist.
            raise services.BatchInvalid(
                [FieldError("source", f"unknown source {source_name[:100]!r}, or not one this client may submit to")]
            )
        if "events" in body:
            rows = body["events"]
            if not isinstance(rows, list):
                raise services.BatchInvalid([FieldError("events", "must be a list of events")])
            if not 1 <= len(rows) <= settings.SECAI_MAX_BATCH:
                raise services.BatchInvalid(
                    [FieldError("events", f"must hold 1 to {settings.SECAI_MAX_BATCH} events, got {len(rows)}")]
                )
            extra = [k for k in body if k not in ("source", "events")]
            if extra:
                raise services.BatchInvalid([FieldError(str(k)[:100], "is not a known field of a batch") for k in extra])
        else:
            rows = [{k: v for k, v in body.items() if k != "source"}]
        result = services.events_ingest(source=source, rows=rows)
        # The shape of IngestResultSerializer (the schema's), built directly: a serializer per
        # event cost a tenth of a 1,000-event request.
        body = {"accepted": result.accepted, "duplicates": result.duplicates, "events": result.events}
        return Response(body, status=status.HTTP_202_ACCEPTED)

    def get_queryset(self):
        p = self.request.query_params
        if p.get("status") and p["status"] not in EventStatus.values:
            raise drf_exceptions.ValidationError({"status": f"must be one of {', '.join(EventStatus.values)}"})
        qs = selectors.event_list(source=p.get("source"), status=p.get("status"), entity=p.get("entity"))
        if not roles.is_admin(self.request.user):
            # reviewers read the events of the sources they review, API clients of those they submit to
            qs = qs.filter(source__in=selectors.sources_readable(user=self.request.user))
        return qs.prefetch_related(Prefetch("review_item__verdicts", queryset=Verdict.objects.order_by("-created_at")))


@extend_schema(
    parameters=[
        OpenApiParameter("state", str, description="open (default), claimed, decided, escalated, active or all"),
        OpenApiParameter("source", str, description="source name"),
        OpenApiParameter("action", str, description="proposed action (name)"),
        OpenApiParameter("kind", str, description="flagged or audit_sample"),
        OpenApiParameter("min_score", float),
        OpenApiParameter("max_score", float),
        OpenApiParameter("entity", str, description="exact entity"),
        OpenApiParameter("model_version", int, description="version number of the model that scored the event"),
        OpenApiParameter("max_age_hours", float, description="opened within this many hours"),
        OpenApiParameter("q", str, description="entity or external id, exact or prefix"),
    ]
)
class ReviewItemViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = s.ReviewItemSerializer
    permission_classes = [IsReviewer]
    pagination_class = QueueCursorPagination

    def get_queryset(self):
        return self._queryset().prefetch_related("deliveries", "appeals")

    def _queryset(self):
        if self.action != "list":
            return selectors.review_queue(viewer=self.request.user, state=None)  # addressable by id whatever its state
        p = self.request.query_params
        state = p.get("state", ReviewState.OPEN)
        if state not in ("all", "active", *ReviewState.values):
            raise drf_exceptions.ValidationError({"state": f"must be one of all, active, {', '.join(ReviewState.values)}"})
        if p.get("source") and not Source.objects.filter(name=p["source"]).exists():
            return ReviewItem.objects.none()
        # The console queue's filters, parsed by the same code; here a value the console would
        # ignore is refused, naming the parameter.
        filters = selectors.QueueFilters.from_query(p)
        refused = selectors.queue_filters_refused(p, filters)
        if refused:
            raise drf_exceptions.ValidationError(refused)
        qs = selectors.review_queue_filtered(filters=filters, viewer=self.request.user)
        return qs.select_related("event", "source", "claimed_by", "event__model_version").order_by(*selectors.QUEUE_ORDER)

    @extend_schema(request=None, responses={200: s.ReviewItemSerializer, 204: None})
    @action(detail=False, methods=["post"], url_path="claim-next")
    @takes_no_body
    def claim_next(self, request):
        source = None
        if request.query_params.get("source"):
            source = get_object_or_404(selectors.sources_reviewable(user=request.user), name=request.query_params["source"])
        return _next_item_response(request, source=source)

    @extend_schema(request=None, responses={200: s.ReviewItemSerializer})
    @action(detail=True, methods=["post"])
    @takes_no_body
    def claim(self, request, pk=None):
        item = services.review_item_claim(item=self.get_object(), reviewer=request.user)
        return Response(s.ReviewItemSerializer(_detail(item.pk, request.user)).data)

    @extend_schema(request=None, responses={200: s.ReviewItemSerializer})
    @action(detail=True, methods=["post"])
    @takes_no_body
    def release(self, request, pk=None):
        item = services.review_item_release(item=self.get_object(), reviewer=request.user)
        return Response(s.ReviewItemSerializer(_detail(item.pk, request.user)).data)

    @extend_schema(request=None, responses={200: s.ReviewItemSerializer, 204: None})
    @action(detail=True, methods=["post"])
    @takes_no_body
    def skip(self, request, pk=None):
        """Pass on an item: release it for others and get the next one (204 when none). Claim-next
        does not hand the skipped item to this reviewer again for SECAI_SKIP_SECONDS."""
        services.review_item_skip(item=self.get_object(), reviewer=request.user)
        return _next_item_response(request, source=None)

    @extend_schema(request=s.DecisionInSerializer, responses={200: s.VerdictOutSerializer})
    @action(detail=True, methods=["post"])
    def decision(self, request, pk=None):
        item = self.get_object()
        data = s.DecisionInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        verdict = services.verdict_submit(item=item, reviewer=request.user, **data.validated_data)
        return Response(s.VerdictOutSerializer(verdict).data)


def _next_item_response(request, *, source: Source | None) -> Response:
    item = services.review_item_claim_next(reviewer=request.user, source=source)
    if item is None:
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response(s.ReviewItemSerializer(_detail(item.pk, request.user)).data)


def _detail(pk: int, viewer):
    return selectors.review_queue(viewer=viewer, state=None).prefetch_related("deliveries", "appeals").get(pk=pk)


class BulkDecisionInSerializer(s.DecisionInSerializer):
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), min_length=1, max_length=500)
    allowlist_entity = None  # one item at a time: an allow-list entry is a decision about one entity


class BulkDecisionOutSerializer(serializers.Serializer):
    bulk_id = serializers.CharField(help_text="shared by the audit entries of this bulk decision")
    decided = serializers.IntegerField()
    first_opinions = serializers.IntegerField()
    skipped = serializers.ListField(child=serializers.DictField())


class ReviewItemBulkApi(APIView):
    """Apply one verdict to many items; items already decided or held by another reviewer, and ids
    of no item among the reviewer's sources, are skipped and listed; a repeated id counts once."""

    permission_classes = [IsReviewer]

    @extend_schema(request=BulkDecisionInSerializer, responses={200: BulkDecisionOutSerializer})
    def post(self, request):
        data = BulkDecisionInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        result = services.verdict_submit_bulk(
            item_ids=v["ids"], reviewer=request.user, verdict=v["verdict"], reason=v["reason"], note=v["note"]
        )
        return Response(BulkDecisionOutSerializer(result).data)


class VerdictUndoApi(APIView):
    """Undo one's own verdict within the undo window; the item returns to one's claim."""

    permission_classes = [IsReviewer]

    @extend_schema(request=None, responses={200: s.ReviewItemSerializer})
    @takes_no_body
    def post(self, request, pk: int):
        visible = selectors.scoped_to_reviewer(Verdict.objects.all(), viewer=request.user, field="item__source_id")
        verdict = get_object_or_404(visible, pk=pk)
        item = services.verdict_undo(verdict=verdict, reviewer=request.user)
        return Response(s.ReviewItemSerializer(_detail(item.pk, request.user)).data)


class ReasonCodeSerializer(serializers.ModelSerializer):
    class Meta:
        model = ReasonCode
        fields = ["code", "label", "applies_to", "active"]


class ReasonCodeViewSet(viewsets.ReadOnlyModelViewSet):
    """The reason codes reviewers choose from (edited by admins in the Django admin)."""

    serializer_class = ReasonCodeSerializer
    permission_classes = [IsReviewer]
    queryset = ReasonCode.objects.filter(active=True)
    lookup_field = "code"
    pagination_class = None


class SourceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    serializer_class = s.SourceSerializer
    permission_classes = [ReadReviewerWriteAdmin]
    lookup_field = "name"

    def get_queryset(self):
        # reviewers see the sources they review, API clients those they submit to
        return selectors.sources_readable(user=self.request.user).order_by("name")

    pagination_class = None

    def perform_create(self, serializer):
        serializer.instance = services.source_create(actor=self.request.user, **serializer.validated_data)

    @extend_schema(request=s.PolicySerializer, responses={200: s.PolicySerializer})
    @action(detail=True, methods=["get", "patch"], permission_classes=[IsAdmin])
    def policy(self, request, name=None):
        source = self.get_object()
        policy = source.policy
        if request.method == "GET":
            return Response(s.PolicySerializer(policy).data)
        writable = set(s.PolicySerializer.Meta.fields) - set(s.PolicySerializer.Meta.read_only_fields)
        unknown = sorted(set(request.data) - writable) if isinstance(request.data, dict) else []
        if unknown:
            raise drf_exceptions.ValidationError(
                {name[:100]: "is not a field of the policy that can be changed" for name in unknown}
            )
        data = s.PolicySerializer(policy, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        policy = services.policy_update(policy=policy, actor=request.user, **data.validated_data)
        return Response(s.PolicySerializer(policy).data)
