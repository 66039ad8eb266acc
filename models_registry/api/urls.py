"""Source-scoped endpoints of the models registry, included in the API v1 URL map."""

from django.urls import path

from models_registry.api import views

urlpatterns = [
    path("sources/<slug:name>/learning/", views.LearningSettingsApi.as_view(), name="source-learning"),
    path("sources/<slug:name>/monitoring/", views.MonitoringApi.as_view(), name="source-monitoring"),
    path("sources/<slug:name>/tuning/", views.TuningApi.as_view(), name="source-tuning"),
    path("sources/<slug:name>/labelled-data.<slug:fmt>", views.LabelledDataExportApi.as_view(), name="source-labelled-data"),
]
