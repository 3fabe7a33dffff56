"""Overview: this billing period at a glance."""

from __future__ import annotations

from datetime import timedelta

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from billing.documents import money
from tenants.selectors import tenant_events
from workspace.permissions import can, member_required
from workspace.selectors.overview import period_summary
from workspace.selectors.usage import usage_table
from workspace.services.departments import department_budgets_check
from workspace.views.common import page, role_of, tenant_of
from workspace.views.usage import chart_for


@member_required
def overview(request: HttpRequest) -> HttpResponse:
    tenant = tenant_of(request)
    now = timezone.now()
    show_money = can(role_of(request), "view_billing")
    department_budgets_check(tenant=tenant, now=now)  # cheap when nothing is budgeted or all alerted
    summary = period_summary(tenant=tenant, now=now, show_money=show_money)
    last_day = min(now.date(), (summary.end - timedelta(seconds=1)).date())
    table = usage_table(tenant_id=tenant.pk, metric="cost", breakdown="none", start=summary.start.date(), end=last_day)
    bill = summary.bill
    return page(
        request,
        "workspace/overview.html",
        {
            "summary": summary,
            "bill": bill,
            "money": {
                "fee": money(bill.fee, bill.currency),
                "so_far": money(bill.overage_so_far, bill.currency),
                "projected": money(bill.overage_projected, bill.currency),
                "tax": money(bill.tax_projected, bill.currency),
                "total_so_far": money(bill.total_so_far, bill.currency),
                "total": money(bill.total_projected, bill.currency),
                "lines": [(line.label, money(line.amount, bill.currency)) for line in bill.lines],
            }
            if bill
            else None,
            "cost_table": table,
            "cost_chart": None if table.is_empty else chart_for(table, height=200),
            "events": tenant_events(tenant=tenant)[:8],
        },
    )
