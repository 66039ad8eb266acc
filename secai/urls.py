"""URL map: console, REST API v1, OpenAPI, health checks, Django admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from actions.api.views import (
    ActionTypeViewSet,
    AppealDetailApi,
    AppealListApi,
    DeliveryViewSet,
    ExecutorViewSet,
    ListEntryViewSet,
    SubscriptionViewSet,
)
from models_registry.api.views import ModelVersionViewSet, RetrainApi
from reviews.api.audit import AuditEntryViewSet
from reviews.api.views import EventViewSet, ReasonCodeViewSet, ReviewItemBulkApi, ReviewItemViewSet, SourceViewSet, VerdictUndoApi
from secai import health

# No ".json" URL variants: JSON is the only format, and actions without a format argument
# answered them with a 500.
router = DefaultRouter(trailing_slash=True)
router.include_format_suffixes = False
router.register("events", EventViewSet, basename="event")
router.register("review-items", ReviewItemViewSet, basename="review-item")
router.register("sources", SourceViewSet, basename="source")
router.register("reason-codes", ReasonCodeViewSet, basename="reason-code")
router.register("models", ModelVersionViewSet, basename="model")
router.register("audit", AuditEntryViewSet, basename="audit")
router.register("executors", ExecutorViewSet, basename="executor")
router.register("action-types", ActionTypeViewSet, basename="action-type")
router.register("subscriptions", SubscriptionViewSet, basename="subscription")
router.register("deliveries", DeliveryViewSet, basename="delivery")
router.register("list-entries", ListEntryViewSet, basename="list-entry")

api_v1 = [
    path("sources/<slug:name>/retrain/", RetrainApi.as_view(), name="source-retrain"),
    path("", include("models_registry.api.urls")),
    path("review-items/bulk-decision/", ReviewItemBulkApi.as_view(), name="review-item-bulk"),
    path("verdicts/<int:pk>/undo/", VerdictUndoApi.as_view(), name="verdict-undo"),
    path("appeals/", AppealListApi.as_view(), name="appeals"),
    path("appeals/<int:pk>/", AppealDetailApi.as_view(), name="appeal-detail"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # the split view serves its start-up script as a file: the pages' CSP allows no inline script
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    *router.urls,
]

urlpatterns = [
    path("api/v1/", include((api_v1, "api"))),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("models/", include("models_registry.urls")),
    path("actions/", include("actions.urls")),
    path("", include("reviews.urls")),
]
