from django.urls import path

from reviews import dashboard_views, views

app_name = "reviews"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("next/", views.claim_next, name="next"),
    path("items/<int:pk>/", views.item_detail, name="item"),
    path("items/<int:pk>/claim/", views.item_claim, name="claim"),
    path("items/<int:pk>/release/", views.item_release, name="release"),
    path("items/<int:pk>/skip/", views.item_skip, name="skip"),
    path("items/<int:pk>/decide/", views.item_decide, name="decide"),
    path("verdicts/<int:pk>/undo/", views.verdict_undo, name="undo"),
    path("bulk/", views.bulk_decide, name="bulk"),
    path("clusters/", views.clusters, name="clusters"),
    path("sources/<slug:name>/policy/", views.policy_page, name="policy"),
    path("dashboard/", dashboard_views.dashboard_page, name="dashboard"),
    path("dashboard/plots/<slug:name>.png", dashboard_views.dashboard_plot, name="dashboard-plot"),
    path("audit/", dashboard_views.audit_page, name="audit"),
]
