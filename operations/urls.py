"""Public-host URLs of operations: the Prometheus endpoint (admin pages live in admin)."""

from django.urls import path

from saasops.metrics import metrics_view

urlpatterns = [path("metrics", metrics_view, name="metrics")]
