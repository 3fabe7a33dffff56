"""Lifecycle tasks: thin, take ids, idempotent. They run in the public schema, where the
lifecycle, tenants and billing rows live (provisioning makes the tenant schema itself)."""

from __future__ import annotations

from django.db import OperationalError

from saasops.celery import app


@app.task(name="lifecycle.signup_link_send", autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def signup_link_send(signup_id: str) -> bool:
    """Email a pending signup its verification link."""
    from lifecycle.signup import signup_link_email

    return signup_link_email(signup_id=signup_id)


@app.task(name="lifecycle.account_exists_send", autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def account_exists_send(user_id: int, asked_slug: str) -> None:
    """Tell an address that signed up again that it already has an account."""
    from lifecycle.signup import account_exists_email

    account_exists_email(user_id=user_id, asked_slug=asked_slug)


@app.task(name="lifecycle.signup_provision", autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def signup_provision_task(signup_id: str) -> str:
    """Make a verified signup's workspace (idempotent on the signup)."""
    from lifecycle.signup import signup_provision

    return signup_provision(signup_id=signup_id).status


@app.task(name="lifecycle.welcome_send", autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def welcome_send(tenant_id: int) -> bool:
    """The welcome email of a new workspace (once)."""
    return notice_task(tenant_id, "welcome", "welcome", "welcome")


@app.task(name="lifecycle.notice", autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def notice_task(tenant_id: int, kind: str, key: str, name: str) -> bool:
    """Send the owner email `name` once for (kind, key)."""
    from lifecycle.notifications import notice_send_once, workspace_url
    from tenants.models import Tenant

    tenant = Tenant.objects.select_related("plan").get(pk=tenant_id)
    context = {
        "workspace_url": workspace_url(tenant=tenant),
        "plan_url": workspace_url(tenant=tenant, path="/plan/"),
        "billing_url": workspace_url(tenant=tenant, path="/billing/"),
        "plan": tenant.plan,
    }
    return notice_send_once(tenant=tenant, kind=kind, key=key, name=name, context=context)


@app.task(name="lifecycle.trial_reminders")
def trial_reminders() -> dict[str, int]:
    """Hourly: trial reminders due (3 and 1 days before the end), each once."""
    from lifecycle.trials import trial_reminders_send

    run = trial_reminders_send()
    return {"sent": run.sent, "skipped": run.skipped}


@app.task(name="lifecycle.trial_ends")
def trial_ends() -> dict[str, list[int]]:
    """Hourly: convert or suspend the tenants whose trial is over."""
    from lifecycle.trials import trial_ends_process

    run = trial_ends_process()
    return {"converted": run.converted, "suspended": run.suspended}


@app.task(name="lifecycle.cancellations_due")
def cancellations_due_task() -> list[int]:
    """Hourly: cancellations scheduled for a period end that has come."""
    from lifecycle.plan_changes import cancellations_due

    return cancellations_due()


@app.task(name="lifecycle.retention_purge")
def retention_purge_task() -> dict[str, list[int]]:
    """Daily: delete cancelled tenants whose retention period is over."""
    from lifecycle.retention import retention_purge

    run = retention_purge()
    return {"deleted": run.deleted, "failed": run.failed}
