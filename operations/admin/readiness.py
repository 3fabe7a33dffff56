"""Readiness audits: the latest result of each check at a glance, the history, "run now"."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html_join
from django.utils.safestring import SafeString

from operations.admin.common import COLORS, GREY, badge
from operations.models import ReadinessRun, Trigger
from operations.selectors import readiness_latest_by_check
from operations.services.readiness import CHECKS, readiness_run


@admin.register(ReadinessRun)
class ReadinessRunAdmin(admin.ModelAdmin):
    list_display = ("started_at", "status_badge", "checks", "trigger", "triggered_by", "alerted_to")
    list_filter = ("status", "trigger")
    change_list_template = "admin/operations/readinessrun/change_list.html"
    change_form_template = "admin/operations/readinessrun/change_form.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("operations.add_readinessrun")

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).prefetch_related("results").select_related("triggered_by")

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: ReadinessRun) -> SafeString:
        return badge(obj.status)

    @admin.display(description="checks")
    def checks(self, obj: ReadinessRun) -> SafeString:
        by_code = {r.check_code: r for r in obj.results.all()}
        return format_html_join(
            " ",
            '<span class="check-dot" style="background:{}" title="{}: {}"></span>',
            ((COLORS.get(by_code[c].status, GREY), CHECKS[c][0], by_code[c].status) for c in CHECKS if c in by_code),
        )

    def get_urls(self) -> list[URLPattern]:
        return [
            path("run/", self.admin_site.admin_view(self.run_view), name="operations_readinessrun_run"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        latest = readiness_latest_by_check()
        glance = []
        for code, (title, _) in CHECKS.items():
            result = latest.get(code)
            glance.append(
                {
                    "code": code,
                    "title": title,
                    "result": result,
                    "color": COLORS.get(result.status, GREY) if result else GREY,
                    "label": result.get_status_display() if result else "Never run",
                    "url": reverse("admin:operations_readinessrun_change", args=[result.run_id]) if result else "",
                }
            )
        context = {
            "title": "Readiness audits",
            "glance": glance,
            "can_run": self.has_run_permission(request),
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context: dict[str, Any] = {}
        if object_id.isdigit():
            run = get_object_or_404(ReadinessRun, pk=object_id)
            context = {
                "run": run,
                "run_badge": badge(run.status),
                "results": [
                    {
                        "title": CHECKS.get(r.check_code, (r.check_code,))[0],
                        "result": r,
                        "badge": badge(r.status, r.get_status_display()),
                        "evidence": json.dumps(r.evidence, indent=2, sort_keys=True, default=str),
                    }
                    for r in run.results.order_by("id")
                ],
            }
        return super().change_view(request, object_id, form_url, {**context, **(extra_context or {})})

    def run_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_run_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:operations_readinessrun_changelist"))
        only = [request.POST["check"]] if request.POST.get("check") in CHECKS else None
        run = readiness_run(trigger=Trigger.ADMIN, user=request.user, only=only)  # type: ignore[arg-type]
        failing = [r.check_code for r in run.results.all() if r.status == "fail"]
        if failing:
            self.message_user(request, f"Readiness audit #{run.pk}: failing — {', '.join(failing)}.", messages.WARNING)
        else:
            self.message_user(request, f"Readiness audit #{run.pk}: no check failing.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:operations_readinessrun_change", args=[run.pk]))
