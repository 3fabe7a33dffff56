"""Request-level plumbing: request ids and access log, health probes before tenant routing,
and the rule that only a tenant's members are let into its host."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

from saasops import health
from saasops.logging import request_id_var

log = logging.getLogger("saasops.request")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

Handler = Callable[[HttpRequest], HttpResponse]


class RequestIdMiddleware:
    """Takes a sane X-Request-ID from the caller or makes one; logs one line per request."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        request.request_id = request_id  # type: ignore[attr-defined]
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            log.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            return response
        finally:
            request_id_var.reset(token)


class ProbeMiddleware:
    """/healthz and /readyz answer on any host, before tenant routing touches the database."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/healthz":
            return health.healthz(request)
        if request.path == "/readyz":
            return health.readyz(request)
        return self.get_response(request)


class TenantMembershipMiddleware:
    """On a tenant host, a signed-in user who is not a member of that tenant is signed out
    and gets a 404: nothing of the tenant reaches them, not even that it exists for them."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        tenant = getattr(request, "tenant", None)
        if tenant is not None and tenant.kind == "customer" and request.user.is_authenticated:
            from tenants.selectors import membership_get

            membership = membership_get(user=request.user, tenant=tenant)
            if membership is None:
                logout(request)
                from saasops.views import not_found

                return not_found(request)
            request.membership = membership  # type: ignore[attr-defined]
        return self.get_response(request)
