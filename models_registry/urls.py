from django.urls import path

from models_registry import views

app_name = "registry"

urlpatterns = [
    path("", views.models_page, name="models"),
    path("<int:pk>/<str:verb>/", views.model_action, name="model-action"),
    path("sources/<slug:name>/retrain/", views.model_retrain, name="retrain"),
]
