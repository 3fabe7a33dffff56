"""Departments (cost centres): this period's cost against each monthly budget."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_POST

from workspace.forms import BudgetForm, DepartmentForm
from workspace.models import Department, DepartmentBudgetAlert
from workspace.permissions import can, forbidden, member_required, role_required
from workspace.selectors.overview import current_period, open_subscription
from workspace.services.departments import (
    department_budgets_check,
    department_costs,
    department_create,
    department_delete,
    department_update,
)
from workspace.views.common import errors_onto, first_error, page, role_of, tenant_of, user_of


def _page(request: HttpRequest, form: DepartmentForm | None = None, *, status: int = 200) -> HttpResponse:
    tenant = tenant_of(request)
    now = timezone.now()
    department_budgets_check(tenant=tenant, now=now)
    start, end = current_period(tenant=tenant, subscription=open_subscription(tenant=tenant), now=now)
    costs = department_costs(tenant=tenant, start=start, end=end)
    alerts = {a.department_id: a for a in DepartmentBudgetAlert.objects.filter(period_start=start)}
    rows = []
    for department in Department.objects.all():
        cost = costs.pop(department.code, Decimal(0))
        budget = department.monthly_budget_usd
        percent = float(cost * 100 / budget) if budget else None
        state = "" if percent is None else "full" if percent > 100 else "warn" if percent >= 80 else "ok"
        rows.append(
            {
                "department": department,
                "cost": cost,
                "percent": percent,
                "bar": min(100.0, percent or 0),
                "state": state,
                "alert": alerts.get(department.pk),
                "form": BudgetForm(
                    initial={"name": department.name, "monthly_budget_usd": budget}, prefix=f"d{department.pk}"
                ),
            }
        )
    untracked = sorted(costs.items(), key=lambda item: -item[1])
    return page(
        request,
        "workspace/departments.html",
        {
            "rows": rows,
            "untracked": untracked,
            "period_start": start,
            "period_end": end,
            "form": form or DepartmentForm(),
        },
        status=status,
    )


@member_required
def departments(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _page(request)
    if not can(role_of(request), "manage_departments"):
        return forbidden(request, "manage_departments")
    form = DepartmentForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    try:
        department_create(
            tenant=tenant_of(request), code=form.cleaned_data["code"], name=form.cleaned_data["name"],
            monthly_budget_usd=form.cleaned_data["monthly_budget_usd"], actor=user_of(request),
        )  # fmt: skip
    except ValidationError as exc:
        errors_onto(form, exc)
        return _page(request, form, status=400)
    messages.success(request, f"Department “{form.cleaned_data['name']}” added.")
    return redirect("workspace:departments")


@require_POST
@role_required("manage_departments")
def department_edit(request: HttpRequest, pk: int) -> HttpResponse:
    department = get_object_or_404(Department, pk=pk)
    form = BudgetForm(request.POST, prefix=f"d{pk}")
    if not form.is_valid():
        labels = {name: field.label or name for name, field in form.fields.items()}
        problems = "; ".join(f"{labels.get(f, 'Form')}: {' '.join(str(m) for m in e)}" for f, e in form.errors.items())
        messages.error(request, f"{department.name} was not changed. {problems}")
        return redirect("workspace:departments")
    try:
        department_update(
            tenant=tenant_of(request), department=department, name=form.cleaned_data["name"],
            monthly_budget_usd=form.cleaned_data["monthly_budget_usd"], actor=user_of(request),
        )  # fmt: skip
    except ValidationError as exc:
        messages.error(request, first_error(exc))
        return redirect("workspace:departments")
    messages.success(request, f"{department.name} saved.")
    return redirect("workspace:departments")


@require_POST
@role_required("manage_departments")
def department_remove(request: HttpRequest, pk: int) -> HttpResponse:
    department = get_object_or_404(Department, pk=pk)
    department_delete(tenant=tenant_of(request), department=department, actor=user_of(request))
    messages.success(request, f"{department.name} is no longer tracked; its usage stays under its code.")
    return redirect("workspace:departments")
