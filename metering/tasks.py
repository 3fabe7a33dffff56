"""Metering tasks (platform-wide: they take ids and run in the public schema)."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string

from metering.models import UsageAlert
from saasops.celery import app


@app.task(name="metering.usage_alert_email", autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def usage_alert_email(alert_id: int) -> str:
    """Email the tenant's owner about a usage alert. Idempotent: sent at most once per alert."""
    from tenants.models import MemberRole, Membership

    alert = UsageAlert.objects.select_related("tenant", "meter").get(pk=alert_id)
    if alert.emailed_to:
        return alert.emailed_to
    owner = Membership.objects.filter(tenant=alert.tenant, role=MemberRole.OWNER).select_related("user").first()
    if owner is None:
        return ""
    context = {"alert": alert, "tenant": alert.tenant, "base_domain": settings.BASE_DOMAIN}
    subject = f"[{alert.tenant.name}] {alert.meter.name} at {alert.threshold}% of your plan"
    send_mail(subject, render_to_string("emails/usage_alert.txt", context), None, [owner.user.email])
    UsageAlert.objects.filter(pk=alert.pk).update(emailed_to=owner.user.email)
    return owner.user.email
