"""Alert thresholds: one row, edited in admin (no deploy needed)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from operations.models import AlertThresholds


@admin.register(AlertThresholds)
class AlertThresholdsAdmin(admin.ModelAdmin):
    fields = ("error_rate_max", "latency_p95_max_ms", "queue_backlog_max", "failed_payments_max", "window_minutes",
              "updated_at", "updated_by")  # fmt: skip
    readonly_fields = ("updated_at", "updated_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        row = AlertThresholds.current()
        return HttpResponseRedirect(reverse("admin:operations_alertthresholds_change", args=[row.pk]))

    def save_model(self, request: HttpRequest, obj: AlertThresholds, form: Any, change: bool) -> None:
        obj.updated_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)
