"""Workspace jobs. Tenant tasks (`@tenant_task`) run in the tenant's schema, which travels
with the message; they take ids and are idempotent."""

from __future__ import annotations

from django.core.mail import send_mail
from django.db import connection
from django.template.loader import render_to_string
from django_tenants.utils import tenant_context

from saasops.celery import app, tenant_task
from workspace.models import WorkspaceSettings


@tenant_task(name="workspace.describe")
def workspace_describe() -> dict[str, str]:
    """Which schema the task ran in and that schema's workspace name: the probe that shows
    tenant context travels with a task (used by the readiness checks and tests)."""
    return {"schema": getattr(connection, "schema_name", ""), "display_name": WorkspaceSettings.current().display_name}


@tenant_task(
    name="workspace.department_budget_alert_email", autoretry_for=(OSError,), retry_backoff=True, max_retries=5
)
def department_budget_alert_email(alert_id: int) -> str:
    """Email the owner about a department over budget. Sent at most once per alert."""
    from tenants.models import MemberRole, Membership, Tenant
    from workspace.models import DepartmentBudgetAlert

    alert = DepartmentBudgetAlert.objects.select_related("department").get(pk=alert_id)
    if alert.emailed_to:
        return alert.emailed_to
    tenant = Tenant.objects.get(schema_name=getattr(connection, "schema_name", ""))
    owner = (
        Membership.objects.filter(tenant=tenant, role=MemberRole.OWNER).select_related("user").order_by("pk").first()
    )
    if owner is None:
        return ""
    from workspace.links import workspace_url

    context = {"alert": alert, "tenant": tenant, "link": workspace_url(tenant=tenant, path="/departments/")}
    subject = f"[{tenant.name}] {alert.department.name} is over its monthly budget"
    send_mail(subject, render_to_string("workspace/emails/budget_alert.txt", context), None, [owner.user.email])
    DepartmentBudgetAlert.objects.filter(pk=alert.pk).update(emailed_to=owner.user.email)
    return str(owner.user.email)


@app.task(name="workspace.department_budgets_check_all")
def department_budgets_check_all() -> int:
    """Check every customer tenant's department budgets (schedule it in admin → Periodic
    tasks; the workspace pages also check their own tenant when they are opened)."""
    from tenants.models import Tenant
    from workspace.services.departments import department_budgets_check

    raised = 0
    for tenant in Tenant.objects.customers().iterator():
        with tenant_context(tenant):
            raised += len(department_budgets_check(tenant=tenant))
    return raised
