"""Lifecycle emails (Django's email framework, from templates) and the absolute links in them.

Each template `templates/emails/lifecycle_<name>.txt` starts with a `Subject: …` line, then
a blank line, then the body. Occasions that must be told once (a trial reminder) are claimed
in `LifecycleNotice` before sending, so a re-run of the job sends nothing twice.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string

from lifecycle.models import LifecycleNotice
from tenants.models import MemberRole, Membership, Tenant
from tenants.services import tenant_host

log = logging.getLogger(__name__)


def _origin(host: str) -> str:
    scheme = "http" if settings.DEBUG else "https"
    port = "" if not settings.DEBUG or settings.PORT in (80, 443) else f":{settings.PORT}"
    return f"{scheme}://{host}{port}"


def public_url(path: str = "/") -> str:
    return _origin(settings.BASE_DOMAIN) + path


def workspace_url(*, tenant: Tenant, path: str = "/") -> str:
    return _origin(tenant_host(slug=tenant.slug)) + path


def owner_email(*, tenant: Tenant) -> str:
    owner = (
        Membership.objects.filter(tenant=tenant, role=MemberRole.OWNER).select_related("user").order_by("pk").first()
    )
    return owner.user.email if owner is not None and owner.user.email else ""


def email_send(*, name: str, to: str, context: dict[str, Any]) -> None:
    """Render `emails/lifecycle_<name>.txt` and send it to `to` (raises on a send failure,
    so a task can retry)."""
    text = render_to_string(f"emails/lifecycle_{name}.txt", context)
    head, _, body = text.partition("\n\n")
    subject = head.removeprefix("Subject:").strip() if head.startswith("Subject:") else f"saasops: {name}"
    EmailMessage(subject=subject, body=body.strip() + "\n", to=[to]).send()


def notice_send_once(*, tenant: Tenant, kind: str, key: str, name: str, context: dict[str, Any]) -> bool:
    """Send a tenant's owner the email `name` once for (kind, key). Claims the occasion in
    its own transaction first; if sending then fails the claim is released and the error
    raised, so a retry sends it. False when it was sent before or nobody can receive it."""
    to = owner_email(tenant=tenant)
    if not to:
        log.warning("tenant %s has no owner email; %s not sent", tenant.pk, kind)
        return False
    try:
        with transaction.atomic():
            notice = LifecycleNotice.objects.create(tenant=tenant, kind=kind, key=key, recipient=to)
    except IntegrityError:
        return False
    try:
        email_send(name=name, to=to, context={"tenant": tenant, **context})
    except Exception:
        LifecycleNotice.objects.filter(pk=notice.pk).delete()
        raise
    return True
