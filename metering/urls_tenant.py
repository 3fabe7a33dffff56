"""Workspace metering API, mounted at /api/v1/ on tenant hosts."""

from django.urls import path

from metering import api

urlpatterns = [
    path("usage", api.TenantUsageView.as_view(), name="tenant-usage"),
    path("usage.csv", api.TenantUsageCsvView.as_view(), name="tenant-usage-csv"),
]
