from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict:
    tenant = getattr(request, "tenant", None)
    # The tenant's name shows only to its members: a 404 for an outsider names nothing.
    is_tenant_host = tenant is not None and getattr(tenant, "kind", "") == "customer"
    is_member = is_tenant_host and getattr(request, "membership", None) is not None
    scheme = "https" if request.is_secure() else "http"
    port = "" if not settings.DEBUG or settings.PORT in (80, 443) else f":{settings.PORT}"
    return {
        "site_tenant": tenant if is_member else None,
        "on_tenant_host": is_tenant_host,
        "public_url": f"{scheme}://{settings.BASE_DOMAIN}{port}",
        "saasops_version": settings.SAASOPS_VERSION,
    }
