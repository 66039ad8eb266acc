from django.urls import path

from models_registry import views

app_name = "registry"

urlpatterns = [
    path("", views.models_page, name="models"),
    path("monitoring/", views.monitoring_overview, name="monitoring-overview"),
    path("<int:pk>/report/", views.model_report, name="report"),
    path("<int:pk>/report/<slug:kind>.png", views.model_report_plot, name="report-plot"),
    path("<int:pk>/<str:verb>/", views.model_action, name="model-action"),
    path("sources/<slug:name>/retrain/", views.model_retrain, name="retrain"),
    path("sources/<slug:name>/settings/", views.learning_settings_page, name="settings"),
    path("sources/<slug:name>/monitoring/", views.monitoring_page, name="monitoring"),
    path("sources/<slug:name>/monitoring/run/", views.monitoring_run, name="monitoring-run"),
    path("sources/<slug:name>/monitoring/<slug:kind>.png", views.monitoring_plot, name="monitoring-plot"),
    path("sources/<slug:name>/tuning/", views.tuning_page, name="tuning"),
    path("sources/<slug:name>/export.<slug:fmt>", views.export_labels, name="export"),
]
