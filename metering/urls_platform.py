"""Platform metering API, mounted at /api/v1/ on the public host."""

from django.urls import path

from metering import api

urlpatterns = [
    path("events", api.EventsView.as_view(), name="platform-events"),
    path("gate", api.GateView.as_view(), name="platform-gate"),
    path("tenants/<slug:slug>/usage", api.PlatformUsageView.as_view(), name="platform-tenant-usage"),
]
