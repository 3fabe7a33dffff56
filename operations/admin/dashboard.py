"""Business metrics dashboard (the changelist of MetricsSnapshot): KPIs, SVG charts, margins,
CSV exports. Every number comes from operations.finance (definitions in docs/METRICS.md)."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from operations.admin.common import percent
from operations.charts import Series, bar_chart, line_chart
from operations.finance import CURRENCY, PeriodMetrics, months_back, months_metrics
from operations.models import MetricsSnapshot
from operations.services.snapshots import metrics_snapshot_take
from tenants.revenue import money_format

MONTHS = 12
MONTH_COLUMNS = [
    "month",
    "mrr",
    "arr",
    "new_mrr",
    "reactivation_mrr",
    "expansion_mrr",
    "contraction_mrr",
    "churned_mrr",
    "logo_churn_rate",
    "revenue_churn_rate",
    "net_revenue_churn_rate",
    "arpu",
    "paying_tenants",
    "active_tenants",
    "trials_ended",
    "trials_converted",
    "trial_conversion_rate",
]
PLAN_COLUMNS = [
    "plan",
    "active",
    "trialing",
    "paying",
    "mrr",
    "revenue",
    "tracked_cost",
    "gross_margin",
    "gross_margin_pct",
]
TENANT_COLUMNS = ["tenant_id", "tenant", "plan", "revenue", "tracked_cost", "gross_margin", "gross_margin_pct"]
SNAPSHOT_COLUMNS = [
    "day",
    "currency",
    "mrr",
    "arr",
    "paying_tenants",
    "active_tenants",
    "arpu",
    "new_mrr",
    "reactivation_mrr",
    "expansion_mrr",
    "contraction_mrr",
    "churned_mrr",
    "logo_churn_rate",
    "revenue_churn_rate",
    "net_revenue_churn_rate",
    "trials_ended",
    "trials_converted",
    "trial_conversion_rate",
]


def _money(minor: int | None) -> str:
    return "–" if minor is None else money_format(minor=minor, currency=CURRENCY)


def _plain(value: Any) -> str:
    return "" if value is None else str(value)


def month_rows(metrics: list[PeriodMetrics]) -> list[dict[str, Any]]:
    rows = []
    for m in metrics:
        row = m.as_row()
        rows.append({"month": m.start.strftime("%Y-%m"), **{k: row[k] for k in MONTH_COLUMNS if k != "month"}})
    return rows


@admin.register(MetricsSnapshot)
class MetricsDashboardAdmin(admin.ModelAdmin):
    """The changelist is the dashboard; snapshots are read through it and its exports."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("export.csv", wrap(self.export_view), name="operations_metricssnapshot_export"),
            path("snapshot/", wrap(self.snapshot_view), name="operations_metricssnapshot_snapshot"),
            *super().get_urls(),
        ]

    def _selected_month(self, request: HttpRequest, months: list[date]) -> date:
        wanted = request.GET.get("month", "")
        for month in months:
            if month.strftime("%Y-%m") == wanted:
                return month
        return months[-1]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        now = timezone.now()
        months = months_back(today=now.date(), count=MONTHS)
        metrics = months_metrics(months=months, now=now)
        selected = self._selected_month(request, months)
        chosen = metrics[months.index(selected)]
        labels = [m.strftime("%b %y") for m in months]
        mrr_chart = line_chart(
            labels, [Series("MRR", [m.mrr / 100 for m in metrics], "#3f51b5")], title="MRR at month end (USD)",
            fmt=lambda v: f"${v:,.0f}",
        )  # fmt: skip
        movements_chart = bar_chart(
            labels,
            [
                Series("new", [m.new / 100 for m in metrics], "#15803d"),
                Series("reactivation", [m.reactivation / 100 for m in metrics], "#59a14f"),
                Series("expansion", [m.expansion / 100 for m in metrics], "#4e79a7"),
                Series("contraction", [-m.contraction / 100 for m in metrics], "#f28e2b"),
                Series("churned", [-m.churned / 100 for m in metrics], "#b91c1c"),
            ],
            title="MRR movements per month (USD)",
            fmt=lambda v: f"${v:,.0f}",
        )
        plan_labels = [row["name"] for row in chosen.by_plan]
        plans_chart = bar_chart(
            plan_labels,
            [
                Series("paying", [row["paying"] for row in chosen.by_plan], "#15803d"),
                Series("trialing", [row["trialing"] for row in chosen.by_plan], "#2563eb"),
            ],
            title=f"Active tenants per plan, {selected:%B %Y}",
            fmt=lambda v: f"{v:,.0f}",
        )
        snapshots = list(MetricsSnapshot.objects.filter(day__gte=now.date() - timedelta(days=90)).order_by("day"))
        daily_chart = (
            line_chart(
                [s.day.strftime("%d %b") for s in snapshots],
                [Series("MRR", [s.mrr / 100 for s in snapshots], "#3f51b5")],
                title="Daily MRR from snapshots (USD)",
                fmt=lambda v: f"${v:,.0f}",
            )
            if len(snapshots) >= 2 and any(s.mrr for s in snapshots)
            else None
        )
        last_full = metrics[-2]
        current = metrics[-1]
        kpis = [
            ("MRR", _money(current.mrr), "now"),
            ("ARR", _money(current.arr), "MRR × 12"),
            ("ARPU", _money(current.arpu), f"{current.paying} paying tenants"),
            ("Active tenants", f"{current.active}", "trialing, active, past due"),
            ("Logo churn", percent(last_full.logo_churn_rate, 1).lstrip("+"), f"{last_full.start:%B}"),
            ("Revenue churn", percent(last_full.revenue_churn_rate, 1).lstrip("+"), f"{last_full.start:%B} (gross)"),
            ("Net revenue churn", percent(last_full.net_revenue_churn_rate, 1), f"{last_full.start:%B}"),
            ("Trial → paid", percent(last_full.trial_conversion_rate, 1).lstrip("+"),
             f"{last_full.trials_converted} of {last_full.trials_ended} trials ended in {last_full.start:%B}"),
        ]  # fmt: skip
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Business metrics",
            "kpis": kpis,
            "mrr_chart": mrr_chart,
            "movements_chart": movements_chart,
            "plans_chart": plans_chart,
            "daily_chart": daily_chart,
            "months": [
                {
                    **row,
                    "mrr_text": _money(row["mrr"]),
                    "arpu_text": _money(row["arpu"]),
                    "new_text": _money(row["new_mrr"] + row["reactivation_mrr"]),
                    "expansion_text": _money(row["expansion_mrr"]),
                    "contraction_text": _money(row["contraction_mrr"]),
                    "churned_text": _money(row["churned_mrr"]),
                    "logo_text": percent(row["logo_churn_rate"], 1).lstrip("+"),
                    "revenue_text": percent(row["revenue_churn_rate"], 1).lstrip("+"),
                    "conversion_text": percent(row["trial_conversion_rate"], 1).lstrip("+"),
                }
                for row in month_rows(metrics)
            ][::-1],  # fmt: skip
            "month_choices": [m.strftime("%Y-%m") for m in months][::-1],
            "selected": selected.strftime("%Y-%m"),
            "selected_label": selected.strftime("%B %Y") + (" (to date)" if selected == months[-1] else ""),
            "plans": chosen.by_plan,
            "tenants": chosen.by_tenant[:50],
            "tenant_count": len(chosen.by_tenant),
            "export_url": reverse("admin:operations_metricssnapshot_export"),
            "snapshot_url": reverse("admin:operations_metricssnapshot_snapshot"),
            "snapshot_count": MetricsSnapshot.objects.count(),
            "last_snapshot": MetricsSnapshot.objects.order_by("-day").first(),
            "can_snapshot": request.user.has_perm("operations.add_metricssnapshot"),
        }
        return TemplateResponse(request, "admin/operations/metricssnapshot/dashboard.html", context)

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """?table=months (default) | plans | tenants (with ?month=YYYY-MM) | snapshots."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        table = request.GET.get("table", "months")
        now = timezone.now()
        months = months_back(today=now.date(), count=MONTHS)
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        writer = csv.writer(response, lineterminator="\n")
        if table == "snapshots":
            columns = SNAPSHOT_COLUMNS
            rows = [{c: getattr(s, c) for c in columns} for s in MetricsSnapshot.objects.order_by("day")]
            name = "metrics-snapshots.csv"
        elif table in ("plans", "tenants"):
            selected = self._selected_month(request, months)
            metrics = months_metrics(months=[selected], now=now)[0]
            columns = PLAN_COLUMNS if table == "plans" else TENANT_COLUMNS
            rows = metrics.by_plan if table == "plans" else metrics.by_tenant
            name = f"metrics-{table}-{selected:%Y-%m}.csv"
        elif table == "months":
            columns = MONTH_COLUMNS
            rows = month_rows(months_metrics(months=months, now=now))
            name = "metrics-months.csv"
        else:
            return HttpResponse("table must be months, plans, tenants or snapshots\n", status=400)
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_plain(row.get(c)) for c in columns])
        return response

    def snapshot_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("operations.add_metricssnapshot"):
            raise PermissionDenied
        if request.method == "POST":
            snapshot = metrics_snapshot_take(force=True)
            self.message_user(
                request, f"Snapshot of {snapshot.day} taken: MRR {_money(snapshot.mrr)}.", messages.SUCCESS
            )
        return HttpResponseRedirect(reverse("admin:operations_metricssnapshot_changelist"))
