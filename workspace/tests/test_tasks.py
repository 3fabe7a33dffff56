"""The budget check across tenants, and its schedule."""

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from metering.periods import quota_period
from workspace.models import Department, DepartmentBudgetAlert
from workspace.tests.conftest import query

pytestmark = pytest.mark.django_db


def test_check_all_raises_each_alert_once(tenant_a, tenant_b, record):
    from workspace.tasks import department_budgets_check_all

    now = timezone.now()
    start, _ = quota_period(tenant=tenant_b, at=now)
    record([query("bt1", "tenant-b", now - (now - start) / 2, input_tokens=1_000_000, department="ops")])
    with tenant_context(tenant_b):
        Department.objects.create(code="ops", name="Ops", monthly_budget_usd=1)
    with tenant_context(tenant_a):
        Department.objects.create(code="ops", name="Ops", monthly_budget_usd=1)  # A spent nothing
    assert department_budgets_check_all() == 1
    assert department_budgets_check_all() == 0
    with tenant_context(tenant_b):
        assert DepartmentBudgetAlert.objects.count() == 1
    with tenant_context(tenant_a):
        assert DepartmentBudgetAlert.objects.count() == 0


def test_schedule_is_installed_once():
    from workspace.schedules import NAME, TASK, schedules_ensure

    first = schedules_ensure()
    assert schedules_ensure().pk == first.pk
    assert (first.name, first.task, first.crontab.minute) == (NAME, TASK, "20")
