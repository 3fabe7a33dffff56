"""Departments (cost centres) and their monthly budgets, in the tenant's own schema.

A department's cost is what metering attributed to its `code` (the events' `department`
property) in the current billing period, read with metering.selectors.usage_series. When it
passes the budget an alert is recorded once per department and period (a unique constraint:
running the check again, concurrently or from a retried task, is a no-op) and the owner is
emailed after commit.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from metering.selectors import usage_series
from tenants.models import Tenant, User
from tenants.services import tenant_event_record
from workspace.models import Department, DepartmentBudgetAlert
from workspace.selectors.overview import current_period, open_subscription


def department_costs(*, tenant: Tenant, start: datetime, end: datetime) -> dict[str, Decimal]:
    """Cost per department code over [start, end) (codes without usage are absent)."""
    costs: dict[str, Decimal] = {}
    for row in usage_series(tenant_id=tenant.pk, start=start, end=end, granularity="month", group_by="department"):
        costs[row["department"]] = costs.get(row["department"], Decimal(0)) + Decimal(row["cost_usd"])
    return costs


@transaction.atomic
def department_create(
    *, tenant: Tenant, code: str, name: str, monthly_budget_usd: Decimal | None, actor: User
) -> Department:
    code, name = code.strip(), name.strip()
    if not code or not name:
        raise ValidationError("A department needs a code and a name.")
    if Department.objects.filter(code=code).exists():
        raise ValidationError({"code": [f"A department with the code “{code}” exists already."]})
    department = Department.objects.create(code=code, name=name, monthly_budget_usd=monthly_budget_usd)
    tenant_event_record(
        tenant=tenant,
        kind="department_created",
        actor=actor,
        details={"code": code, "budget_usd": None if monthly_budget_usd is None else str(monthly_budget_usd)},
    )
    return department


@transaction.atomic
def department_update(
    *, tenant: Tenant, department: Department, name: str, monthly_budget_usd: Decimal | None, actor: User
) -> Department:
    """Rename or re-budget. A budget raised above this period's cost does not undo an alert
    already sent; a budget lowered below it alerts on the next check."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": ["A department needs a name."]})
    old = department.monthly_budget_usd
    Department.objects.filter(pk=department.pk).update(name=name, monthly_budget_usd=monthly_budget_usd)
    department.refresh_from_db()
    if old != monthly_budget_usd:
        tenant_event_record(
            tenant=tenant,
            kind="department_budget_changed",
            actor=actor,
            details={
                "code": department.code,
                "from": None if old is None else str(old),
                "to": None if monthly_budget_usd is None else str(monthly_budget_usd),
            },
        )
    return department


@transaction.atomic
def department_delete(*, tenant: Tenant, department: Department, actor: User) -> None:
    """Stop tracking a department (its usage stays in metering, shown under its code)."""
    code = department.code
    department.delete()
    tenant_event_record(tenant=tenant, kind="department_deleted", actor=actor, details={"code": code})


def department_budgets_check(*, tenant: Tenant, now: datetime | None = None) -> list[DepartmentBudgetAlert]:
    """Record (once per period) and email the alerts of departments over budget this period.
    Runs on the connection's current schema, which must be `tenant`'s. Idempotent."""
    schema = getattr(connection, "schema_name", "")
    if schema != tenant.schema_name:
        raise RuntimeError(f"budgets of {tenant.slug} checked on schema {schema}")
    now = now or timezone.now()
    budgeted = list(Department.objects.filter(monthly_budget_usd__isnull=False))
    if not budgeted:
        return []
    start, end = current_period(tenant=tenant, subscription=open_subscription(tenant=tenant), now=now)
    already = set(DepartmentBudgetAlert.objects.filter(period_start=start).values_list("department_id", flat=True))
    todo = [d for d in budgeted if d.pk not in already]
    if not todo:
        return []
    costs = department_costs(tenant=tenant, start=start, end=end)
    raised = []
    for department in todo:
        cost = costs.get(department.code, Decimal(0))
        assert department.monthly_budget_usd is not None
        if cost <= department.monthly_budget_usd:
            continue
        alert = _alert_record(tenant=tenant, department=department, start=start, end=end, cost=cost)
        if alert is not None:
            raised.append(alert)
    return raised


def _alert_record(
    *, tenant: Tenant, department: Department, start: datetime, end: datetime, cost: Decimal
) -> DepartmentBudgetAlert | None:
    try:
        with transaction.atomic():
            alert = DepartmentBudgetAlert.objects.create(
                department=department,
                period_start=start,
                period_end=end,
                budget_usd=department.monthly_budget_usd or Decimal(0),
                cost_usd=cost,
            )
            tenant_event_record(
                tenant=tenant,
                kind="department_over_budget",
                details={"code": department.code, "budget_usd": str(alert.budget_usd), "cost_usd": str(cost)},
            )
    except IntegrityError:
        return None  # a concurrent check recorded it first
    from workspace.tasks import department_budget_alert_email

    transaction.on_commit(lambda: department_budget_alert_email.delay(alert.pk))
    return alert
