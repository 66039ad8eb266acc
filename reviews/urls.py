from django.urls import path

from reviews import views

app_name = "reviews"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("next/", views.claim_next, name="next"),
    path("items/<int:pk>/", views.item_detail, name="item"),
    path("items/<int:pk>/claim/", views.item_claim, name="claim"),
    path("items/<int:pk>/release/", views.item_release, name="release"),
    path("items/<int:pk>/decide/", views.item_decide, name="decide"),
    path("sources/<slug:name>/policy/", views.policy_page, name="policy"),
]
