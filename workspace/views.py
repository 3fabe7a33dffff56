"""The customer's workspace pages (tenant host)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from tenants.selectors import tenant_events, tenant_members
from workspace.models import WorkspaceSettings


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    return render(
        request,
        "workspace/overview.html",
        {
            "workspace": WorkspaceSettings.current(),
            "tenant": tenant,
            "membership": request.membership,  # type: ignore[attr-defined]
            "members": tenant_members(tenant=tenant),
            "events": tenant_events(tenant=tenant)[:10],
        },
    )
