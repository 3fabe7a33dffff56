"""Platform API URLs, mounted at /api/v1/ on the public host only."""

from django.urls import path

from tenants.api import views

urlpatterns = [
    path("tenants/<slug:slug>/config", views.TenantConfigView.as_view(), name="platform-tenant-config"),
    path(
        "tenants/<slug:slug>/config/versions",
        views.TenantConfigVersionsView.as_view(),
        name="platform-tenant-config-versions",
    ),
]
