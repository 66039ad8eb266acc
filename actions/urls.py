from django.urls import path

from actions import views

app_name = "actions"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("types/<int:pk>/", views.action_type_edit, name="type"),
    path("executors/", views.executors, name="executors"),
    path("executors/<int:pk>/", views.executor_edit, name="executor"),
    path("subscriptions/new/", views.subscription_edit, name="subscription-new"),
    path("subscriptions/<int:pk>/", views.subscription_edit, name="subscription"),
    path("deliveries/", views.deliveries, name="deliveries"),
    path("deliveries/<int:pk>/retry/", views.delivery_retry, name="retry"),
    path("lists/", views.lists, name="lists"),
    path("lists/<int:pk>/remove/", views.list_entry_remove, name="list-remove"),
]
