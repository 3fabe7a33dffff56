"""Departments and budgets: cost this period against the budget, one alert per period."""

from decimal import Decimal

import pytest
from django.utils import timezone

from metering.periods import quota_period
from tenants.models import TenantEvent
from workspace.models import Department, DepartmentBudgetAlert
from workspace.services.departments import department_budgets_check
from workspace.tests.conftest import query

pytestmark = pytest.mark.django_db


@pytest.fixture
def legal_spend(tenant_a, record):
    """Three gpt-4o queries for legal this period, each 1,000,000 input tokens × $2.50/1M +
    100 output tokens × $10/1M = $2.501: $7.503 in all."""
    now = timezone.now()
    start, _ = quota_period(tenant=tenant_a, at=now)
    record([query(f"d{i}", "tenant-a", now - (now - start) / (i + 2), input_tokens=1_000_000) for i in range(3)])


def test_budget_alert_is_recorded_and_emailed_once(as_role, tenant_a, legal_spend, mailoutbox,
                                                   django_capture_on_commit_callbacks):  # fmt: skip
    client = as_role("billing")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/departments/", {"code": "legal", "name": "Legal", "monthly_budget_usd": "5"})
    assert response.status_code == 302
    with django_capture_on_commit_callbacks(execute=True):
        page = client.get("/departments/").content.decode()  # the page checks the budgets
        client.get("/")
        assert department_budgets_check(tenant=tenant_a) == []  # already raised this period
    alert = DepartmentBudgetAlert.objects.get()
    assert (alert.department.code, alert.budget_usd, alert.cost_usd) == ("legal", Decimal("5.00"), Decimal("7.503"))
    assert alert.emailed_to == "owner@tenant-a.test"
    assert "Over budget since" in page and "150% of $5.00" in page
    mails = [m for m in mailoutbox if "over its monthly budget" in m.subject]
    assert len(mails) == 1 and mails[0].to == ["owner@tenant-a.test"]
    assert "has spent $7.50 this billing period" in mails[0].body and "budget of $5.00" in mails[0].body
    assert TenantEvent.objects.filter(tenant=tenant_a, kind="department_over_budget").count() == 1
    assert "Legal is over its budget" in client.get("/").content.decode()


def test_under_budget_no_alert(as_role, legal_spend):
    client = as_role("owner")
    client.post("/departments/", {"code": "legal", "name": "Legal", "monthly_budget_usd": "10"})
    page = client.get("/departments/").content.decode()
    assert not DepartmentBudgetAlert.objects.exists()
    assert "75% of $10.00" in page and "$7.50" in page


def test_untracked_department_codes_are_listed(as_role, legal_spend):
    page = as_role("viewer").get("/departments/").content.decode()
    assert "No departments yet." in page and "Usage under other department codes" in page and "legal" in page


def test_budget_edit_and_delete(as_role, tenant_a):
    client = as_role("admin")
    client.post("/departments/", {"code": "legal", "name": "Legal"})
    department = Department.objects.get()
    prefix = f"d{department.pk}"
    response = client.post(f"/departments/{department.pk}/", {f"{prefix}-name": "Legal & Co",
                           f"{prefix}-monthly_budget_usd": "0.005"}, follow=True)  # fmt: skip
    assert "Legal was not changed" in response.content.decode()
    assert "no more than 2 decimal places" in response.content.decode()
    client.post(
        f"/departments/{department.pk}/", {f"{prefix}-name": "Legal & Co", f"{prefix}-monthly_budget_usd": "12.50"}
    )
    department.refresh_from_db()
    assert (department.name, department.monthly_budget_usd) == ("Legal & Co", Decimal("12.50"))
    assert TenantEvent.objects.filter(tenant=tenant_a, kind="department_budget_changed").exists()
    assert client.post(f"/departments/{department.pk}/delete").status_code == 302
    assert not Department.objects.exists()
    assert client.post(f"/departments/{department.pk}/delete").status_code == 404


@pytest.mark.parametrize(
    "data, message",
    [
        ({"code": "", "name": "Legal"}, "This field is required."),
        ({"code": "legal", "name": "x" * 101}, "at most 100 characters"),
        ({"code": "legal", "name": "Legal", "monthly_budget_usd": "-5"}, "greater than or equal to 0.01"),
        ({"code": "legal", "name": "Legal", "monthly_budget_usd": "lots"}, "Enter a number."),
        (
            {"code": "legal", "name": "Legal", "monthly_budget_usd": "1" * 12},
            "no more than 10 digits before the decimal point",
        ),
        ({"code": "le\x00gal", "name": "Legal"}, "Null characters are not allowed."),
    ],
)
def test_bad_department_input(as_role, data, message):
    response = as_role("owner").post("/departments/", data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Department.objects.exists()


def test_duplicate_code_and_hostile_name(as_role):
    client = as_role("owner")
    client.post("/departments/", {"code": "legal", "name": "<script>alert('x')</script>"})
    response = client.post("/departments/", {"code": "legal", "name": "Again"})
    assert response.status_code == 400 and "exists already" in response.content.decode()
    page = client.get("/departments/").content.decode()
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
