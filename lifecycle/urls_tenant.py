"""Tenant host: hand-off landing, plan page, history (mounted at the root of saasops/urls_tenant.py)."""

from django.urls import path

from lifecycle.views import workspace

app_name = "lifecycle"

urlpatterns = [
    path("handoff/", workspace.handoff, name="handoff"),
    path("plan/", workspace.plan_page, name="plan"),
    path("plan/change/", workspace.plan_change_view, name="plan-change"),
    path("plan/cancel/", workspace.cancel_view, name="plan-cancel"),
    path("plan/reactivate/", workspace.reactivate_view, name="plan-reactivate"),
    path("plan/export/", workspace.export_view, name="plan-export"),
    path("history/", workspace.history, name="history"),
]
