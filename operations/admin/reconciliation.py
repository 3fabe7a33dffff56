"""Reconciliation runs: the history, one run's detail, "run now" and the CSV export."""

from __future__ import annotations

import csv
from datetime import date
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.safestring import SafeString

from operations.admin.common import badge, percent, usd
from operations.models import BillLine, ReconciliationItem, ReconciliationRun, Trigger
from operations.selectors import reconciliation_export_rows
from operations.services.reconciliation import reconciliation_run, reconciliation_run_due

EXPORT_HEADER = ["tenant_id", "tracked_cost", "actual_cost", "variance"]


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(admin.ModelAdmin):
    list_display = ("month_label", "status_badge", "variance_display", "tracked", "actual", "infrastructure",
                    "unattributed", "created_at", "trigger")  # fmt: skip
    list_filter = ("status", "month")
    change_list_template = "admin/operations/reconciliationrun/change_list.html"
    change_form_template = "admin/operations/reconciliationrun/change_form.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("operations.add_reconciliationrun")

    @admin.display(description="month", ordering="month")
    def month_label(self, obj: ReconciliationRun) -> str:
        return obj.month.strftime("%Y-%m")

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: ReconciliationRun) -> SafeString:
        return badge(obj.status, obj.get_status_display())

    @admin.display(description="variance", ordering="variance")
    def variance_display(self, obj: ReconciliationRun) -> str:
        return percent(obj.variance)

    @admin.display(description="tracked", ordering="tracked_cost")
    def tracked(self, obj: ReconciliationRun) -> str:
        return usd(obj.tracked_cost)

    @admin.display(description="billed (models)", ordering="actual_cost")
    def actual(self, obj: ReconciliationRun) -> str:
        return usd(obj.actual_cost)

    @admin.display(description="infrastructure")
    def infrastructure(self, obj: ReconciliationRun) -> str:
        return usd(obj.infrastructure_cost)

    @admin.display(description="unattributed")
    def unattributed(self, obj: ReconciliationRun) -> str:
        return usd(obj.unattributed_cost)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("run/", wrap(self.run_view), name="operations_reconciliationrun_run"),
            path("<int:object_id>/export.csv", wrap(self.export_view), name="operations_reconciliationrun_export"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        months = BillLine.objects.order_by("-month").values_list("month", flat=True).distinct()
        context = {
            "title": "Cost reconciliation runs",
            "can_run": self.has_run_permission(request),
            "bill_months": [m.strftime("%Y-%m") for m in months],
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        run = get_object_or_404(ReconciliationRun, pk=object_id) if object_id.isdigit() else None
        context: dict[str, Any] = {}
        if run is not None:
            items = list(run.items.all())
            context = {
                "run": run,
                "status_badge": self.status_badge(run),
                "variance": percent(run.variance),
                "providers": [i for i in items if i.kind == ReconciliationItem.Kind.PROVIDER],
                "models": [i for i in items if i.kind == ReconciliationItem.Kind.MODEL],
                "infrastructure": [i for i in items if i.kind == ReconciliationItem.Kind.INFRASTRUCTURE],
                "tenant_rows": run.tenants.order_by("-actual_cost", "tenant_id"),
                "export_url": reverse("admin:operations_reconciliationrun_export", args=[run.pk]),
                "tolerance": f"{run.tolerance * 100:.0f}",
            }
        return super().change_view(request, object_id, form_url, {**context, **(extra_context or {})})

    def run_view(self, request: HttpRequest) -> HttpResponse:
        """POST: reconcile a month now (recorded even when nothing changed), or every month."""
        if not self.has_run_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:operations_reconciliationrun_changelist"))
        month = request.POST.get("month", "")
        user = request.user
        if month:
            try:
                day = date.fromisoformat(f"{month}-01")
            except ValueError:
                self.message_user(request, f"{month!r} is not a month (YYYY-MM).", messages.ERROR)
                return HttpResponseRedirect(reverse("admin:operations_reconciliationrun_changelist"))
            run = reconciliation_run(month=day, trigger=Trigger.ADMIN, user=user, force=True)  # type: ignore[arg-type]
            runs = [run] if run is not None else []
        else:
            runs = reconciliation_run_due(trigger=Trigger.ADMIN, user=user)  # type: ignore[arg-type]
        if not runs:
            self.message_user(request, "No bill is imported for that month: nothing to reconcile.", messages.WARNING)
        for run in runs:
            level = messages.SUCCESS if run.status != "flagged" else messages.WARNING
            self.message_user(
                request, f"{run.month:%Y-%m}: {run.get_status_display()} (variance {percent(run.variance)})", level
            )
        if len(runs) == 1:
            return HttpResponseRedirect(reverse("admin:operations_reconciliationrun_change", args=[runs[0].pk]))
        return HttpResponseRedirect(reverse("admin:operations_reconciliationrun_changelist"))

    def export_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = get_object_or_404(ReconciliationRun, pk=object_id)
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="reconciliation-{run.month:%Y-%m}-run{run.pk}.csv"'
        writer = csv.writer(response, lineterminator="\n")
        writer.writerow(EXPORT_HEADER)
        writer.writerows(reconciliation_export_rows(run=run))
        return response
