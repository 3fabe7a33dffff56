"""Alert email to staff: failing readiness checks and monitoring thresholds crossed."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from tenants.models import User

log = logging.getLogger(__name__)


def alert_recipients() -> list[str]:
    """Active staff users with an email, plus ALERT_EMAIL_TO; ADMINS when that is nobody."""
    emails = set(User.objects.filter(is_staff=True, is_active=True).exclude(email="").values_list("email", flat=True))
    emails.update(getattr(settings, "ALERT_EMAIL_TO", []))
    if not emails:
        emails.update(email for _, email in getattr(settings, "ADMINS", []))
    return sorted(emails)


def admin_url(name: str) -> str:
    scheme = "http" if settings.DEBUG else "https"
    port = f":{settings.PORT}" if settings.DEBUG and settings.PORT not in (80, 443) else ""
    return f"{scheme}://{settings.BASE_DOMAIN}{port}{reverse(name, urlconf=settings.PUBLIC_SCHEMA_URLCONF)}"


def alert_send(*, subject: str, lines: list[str], link_name: str) -> list[str]:
    """Email every recipient (one message); returns who was emailed. Never raises: an alert
    that cannot be sent is logged as an error (which the logs' own alerting picks up)."""
    recipients = alert_recipients()
    if not recipients:
        log.error("alert not sent, nobody to send it to (no staff email, ALERT_EMAIL_TO or ADMINS): %s", subject)
        return []
    body = "\n".join([*lines, "", f"Details: {admin_url(link_name)}"])
    try:
        send_mail(f"[saasops] {subject}", body, settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception:
        log.exception("alert email failed: %s", subject)
        return []
    return recipients
