"""Absolute links into a tenant's workspace, for emails (the same rule as billing's)."""

from __future__ import annotations

from django.conf import settings

from tenants.models import Tenant
from tenants.services import tenant_host


def workspace_url(*, tenant: Tenant, path: str = "/") -> str:
    scheme = "http" if settings.DEBUG else "https"
    port = "" if not settings.DEBUG or settings.PORT in (80, 443) else f":{settings.PORT}"
    return f"{scheme}://{tenant_host(slug=tenant.slug)}{port}{path}"
