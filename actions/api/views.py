"""REST API v1 for actions: executors, action types and modes, subscriptions, the delivery log,
allow and block lists, and appeals from client systems."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework import serializers as drf_serializers
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from actions import selectors, services
from actions.api import serializers as s
from actions.choices import AppealState, DeliveryKind, DeliveryState, ListKind
from actions.models import ActionType, Executor, Subscription
from reviews import roles
from reviews.api.permissions import CanSubmitEvents, IsAdmin, IsReviewer
from reviews.api.views import IdCursorPagination
from reviews.models import Source
from reviews.selectors import scoped_to_reviewer
from reviews.services import ServiceError
from secai.api import takes_no_body


def _choice(request, name: str, allowed: list[str]) -> str:
    value = request.query_params.get(name, "")
    if value and value not in allowed:
        raise drf_serializers.ValidationError({name: f"must be one of {', '.join(allowed)}"})
    return value


def _source_param(request, *, required: bool = False) -> Source | None:
    name = request.query_params.get("source", "")
    if not name:
        if required:
            raise drf_serializers.ValidationError({"source": "is required"})
        return None
    source = Source.objects.filter(name=name[:64]).first()
    if source is None:
        raise drf_serializers.ValidationError({"source": f"unknown source {name[:100]!r}"})
    return source


class ExecutorViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.GenericViewSet
):
    """Executors (admin): signed webhooks or log-only. The secret is write-only."""

    serializer_class = s.ExecutorSerializer
    permission_classes = [IsAdmin]
    queryset = Executor.objects.order_by("name")
    pagination_class = None
    http_method_names = ["get", "post", "patch", "head", "options"]

    def perform_create(self, serializer):
        serializer.instance = services.executor_save(actor=self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.executor_save(
            actor=self.request.user, executor=self.get_object(), **serializer.validated_data
        )


@extend_schema(parameters=[OpenApiParameter("source", str)])
class ActionTypeViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.GenericViewSet
):
    """Action types per source (admin): severity, executor, autonomy mode, deadline fallback."""

    serializer_class = s.ActionTypeSerializer
    permission_classes = [IsAdmin]
    pagination_class = None
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        qs = ActionType.objects.select_related("source", "executor").order_by("source__name", "severity", "name")
        if self.action == "list":
            source = _source_param(self.request)
            if source is not None:
                qs = qs.filter(source=source)
        return qs

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        source = data.pop("source")
        serializer.instance = services.action_type_save(actor=self.request.user, source=source, **data)

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        if "source" in data and data.pop("source") != serializer.instance.source:
            raise ServiceError("an action type stays with its source", field="source")
        serializer.instance = services.action_type_save(actor=self.request.user, action_type=self.get_object(), **data)


class SubscriptionViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.GenericViewSet
):
    """Outbound webhooks (admin) for item.opened, item.decided, model.promoted, appeal.opened, appeal.decided."""

    serializer_class = s.SubscriptionSerializer
    permission_classes = [IsAdmin]
    queryset = Subscription.objects.select_related("source").order_by("name")
    pagination_class = None
    http_method_names = ["get", "post", "patch", "head", "options"]

    def perform_create(self, serializer):
        serializer.instance = services.subscription_save(actor=self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.subscription_save(
            actor=self.request.user, subscription=self.get_object(), **serializer.validated_data
        )


@extend_schema(
    parameters=[
        OpenApiParameter("state", str, enum=DeliveryState.values),
        OpenApiParameter("kind", str, enum=DeliveryKind.values),
        OpenApiParameter("source", str),
        OpenApiParameter("event", int),
    ]
)
class DeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    """The delivery log (admin): every action, reversal and outbound event, with its attempts."""

    serializer_class = s.DeliverySerializer
    permission_classes = [IsAdmin]
    pagination_class = IdCursorPagination

    def get_queryset(self):
        if self.action != "list":
            return selectors.deliveries()
        event = self.request.query_params.get("event", "")
        if event and not event.isdigit():
            raise drf_serializers.ValidationError({"event": "must be an event id"})
        return selectors.deliveries(
            state=_choice(self.request, "state", DeliveryState.values),
            kind=_choice(self.request, "kind", DeliveryKind.values),
            source=_source_param(self.request),
            event_id=int(event) if event else None,
        )

    @extend_schema(request=None, responses={200: s.DeliverySerializer})
    @action(detail=True, methods=["post"])
    @takes_no_body
    def retry(self, request, pk=None):
        """Send a failed delivery again: a new round of attempts, counted on from the earlier ones (the
        log keeps them and marks the retry), with the same idempotency key."""
        row = services.delivery_retry(delivery=self.get_object(), actor=request.user)
        return Response(s.DeliverySerializer(row).data)


@extend_schema(
    parameters=[
        OpenApiParameter("source", str),
        OpenApiParameter("kind", str, enum=ListKind.values),
        OpenApiParameter("entity", str),
        OpenApiParameter("include_inactive", bool, description="also removed and expired entries"),
    ]
)
class ListEntryViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """Allow and block lists per source. Reviewers read them; admins add and remove entries
    (removal keeps the entry, marked removed, for the record)."""

    serializer_class = s.ListEntrySerializer
    pagination_class = IdCursorPagination

    def get_permissions(self):
        return [IsReviewer()] if self.request.method in ("GET", "HEAD", "OPTIONS") else [IsAdmin()]

    def get_queryset(self):
        return scoped_to_reviewer(self._queryset(), viewer=self.request.user)

    def _queryset(self):
        if self.action != "list":
            return selectors.list_entries(include_inactive=True)
        p = self.request.query_params
        return selectors.list_entries(
            source=_source_param(self.request),
            kind=_choice(self.request, "kind", ListKind.values),
            entity=p.get("entity", "")[:200],
            include_inactive=p.get("include_inactive", "").lower() in ("1", "true", "yes"),
        )

    @extend_schema(responses={201: s.ListEntrySerializer, 200: s.ListEntrySerializer})
    def create(self, request, *args, **kwargs):
        """Add an entry: 201. The entity already on this list (live): its expiry, action and reason
        are updated, 200 with "updated": true. Already on the source's other list (live): 400 naming
        that entry (field "kind"); remove it first."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self.perform_create(serializer)
        updated = serializer.instance.updated
        return Response(serializer.data, status=status.HTTP_200_OK if updated else status.HTTP_201_CREATED)

    def perform_create(self, serializer):
        v = serializer.validated_data
        serializer.instance = services.list_entry_add(
            source=v["source"],
            kind=v["kind"],
            entity=v["entity"],
            action=v.get("action", ""),
            reason=v.get("reason", ""),
            expires_at=v.get("expires_at"),
            actor=self.request.user,
        )

    @takes_no_body
    def destroy(self, request, *args, **kwargs):
        return super().destroy(request, *args, **kwargs)

    def perform_destroy(self, instance):
        services.list_entry_remove(entry=instance, actor=self.request.user)


class AppealListApi(APIView):
    """POST: a client system forwards an affected person's appeal against the action taken on an
    event; the item is reopened at the top of the queue. Sending the same appeal_id again returns
    the first appeal (200) and changes nothing. GET: appeals, newest first."""

    def get_permissions(self):
        return [CanSubmitEvents()] if self.request.method == "POST" else [_CanReadAppeals()]

    @extend_schema(request=s.AppealInSerializer, responses={201: s.AppealSerializer, 200: s.AppealSerializer})
    def post(self, request):
        data = s.AppealInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        source = Source.objects.filter(name=v["source"]).first()
        if source is None or not roles.may_submit_to(request.user, source):
            raise ServiceError(f"unknown source {v['source'][:100]!r}, or not one this client may submit to", field="source")
        appeal, created = services.appeal_file(
            source=source, external_id=v["appeal_id"], event_external_id=v["event"], statement=v["statement"], actor=request.user
        )
        return Response(s.AppealSerializer(appeal).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        parameters=[OpenApiParameter("source", str), OpenApiParameter("state", str, enum=AppealState.values)],
        responses={200: s.AppealSerializer(many=True)},
    )
    def get(self, request):
        qs = _appeals_visible(request.user).filter(
            **({"source": _source_param(request)} if request.query_params.get("source") else {})
        )
        state = _choice(request, "state", AppealState.values)
        if state:
            qs = qs.filter(state=state)
        return Response(s.AppealSerializer(qs[:500], many=True, context={"viewer": request.user}).data)


class AppealDetailApi(APIView):
    def get_permissions(self):
        return [_CanReadAppeals()]

    @extend_schema(responses={200: s.AppealSerializer})
    def get(self, request, pk: int):
        appeal = get_object_or_404(_appeals_visible(request.user), pk=pk)
        return Response(s.AppealSerializer(appeal, context={"viewer": request.user}).data)


class _CanReadAppeals(IsReviewer):
    message = "API client, reviewer or admin role required."

    def has_permission(self, request, view) -> bool:
        return roles.is_reviewer(request.user) or roles.is_api_client(request.user)


def _appeals_visible(user):
    qs = selectors.appeals().select_related("original_verdict", "final_verdict")
    if roles.is_reviewer(user):
        return scoped_to_reviewer(qs, viewer=user)  # the sources the reviewer is assigned to
    return qs.filter(source__api_clients=user)  # a client system sees the appeals of its own sources
