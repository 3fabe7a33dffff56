"""Live probes of the readiness audit: the quota gate and the /metrics endpoint."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from django.conf import settings
from django.db import transaction

from operations.finance import PROBE_SLUG
from tenants.models import LimitAction, Plan, PlanLimit, Tenant, TenantStatus

PROBE_NAME = "Readiness probe (system, not a customer)"


@transaction.atomic
def probe_tenant_ensure(*, plan: Plan) -> Tenant:
    """The audit's own tenant on `plan` (the free plan), active: created once, put back on the
    plan and status if someone changed them. It has no subscription, owner or usage, so it is
    never billed and its gate counters belong to nobody else; business metrics leave it out."""
    from tenants.config import config_version_create
    from tenants.services import tenant_create, tenant_plan_change
    from tenants.status import tenant_status_change

    tenant = Tenant.objects.filter(slug=PROBE_SLUG).first()
    if tenant is None:
        tenant = tenant_create(name=PROBE_NAME, slug=PROBE_SLUG, plan=plan, status=TenantStatus.ACTIVE)
        config_version_create(tenant=tenant, overrides={}, note="Initial configuration")
        return tenant
    if tenant.plan_id != plan.pk:
        tenant_plan_change(tenant=tenant, plan=plan, reason="readiness probe runs on the free plan")
    if tenant.status != TenantStatus.ACTIVE:
        tenant_status_change(tenant=tenant, to=TenantStatus.ACTIVE, reason="readiness probe must be active")
    return tenant


def quota_probe() -> dict[str, Any]:
    """Ask the gate for one more than the probe tenant's hard limit: it must refuse (402),
    and a second identical ask must see the same usage (a refusal admits nothing)."""
    from metering.models import Meter
    from metering.quota import gate_check

    free = Plan.objects.filter(code="free").first()
    if free is None:
        return {"ok": False, "result": "no plan with code 'free' to probe with"}
    limits = PlanLimit.objects.filter(plan=free, on_exceed=LimitAction.BLOCK, included__isnull=False)
    meters = {m.resource: m.code for m in Meter.objects.filter(is_active=True).exclude(resource="")}
    limit = next(
        (lim for lim in sorted(limits, key=lambda lim: lim.resource != "api_calls") if lim.resource in meters), None
    )
    if limit is None or limit.included is None:
        return {"ok": False, "result": "the free plan has no hard limit on a metered resource"}
    tenant = probe_tenant_ensure(plan=free)
    meter, quantity = meters[limit.resource], limit.included + 1
    first = gate_check(slug=tenant.slug, meter=meter, quantity=quantity)
    second = gate_check(slug=tenant.slug, meter=meter, quantity=quantity)
    used = [d.body.get("error", {}).get("details", {}).get("used") for d in (first, second)]
    ok = first.status == 402 and second.status == 402 and used[0] == used[1]
    return {
        "ok": ok,
        "result": "refused (402)" if ok else f"answered {first.status}, then {second.status}",
        "tenant": tenant.slug,
        "plan": free.code,
        "meter": meter,
        "limit": limit.included,
        "requested": quantity,
        "statuses": [first.status, second.status],
        "used_before_and_after": used,
    }


def metrics_probe() -> dict[str, Any]:
    """GET /metrics on the public host through the whole middleware stack (in process), parse
    the answer, and check that the request itself was counted."""
    from django.test import Client
    from django.urls import get_urlconf, set_urlconf
    from prometheus_client.parser import text_string_to_metric_families

    from saasops import metrics
    from saasops.redis import client as redis_client

    def counted() -> float:
        metrics.flush()
        return sum(v for k, v in metrics.counters().items() if k.startswith("http_requests|metrics|"))

    before = counted()
    environ: dict[str, Any] = {"HTTP_HOST": settings.BASE_DOMAIN, metrics.PROBE_HEADER: "readiness"}
    token = getattr(settings, "METRICS_TOKEN", "")
    networks = getattr(settings, "METRICS_ALLOWED_NETWORKS", [])
    if token:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    elif networks:
        environ["REMOTE_ADDR"] = str(ipaddress.ip_network(networks[0], strict=False).network_address)
    # The probe may run inside a request (admin's "run now"): Django's handler leaves the
    # thread on ROOT_URLCONF when it finishes, so the caller's URLconf is put back.
    previous = get_urlconf()
    try:
        response = Client(**environ).get("/metrics", secure=not settings.DEBUG)
    finally:
        set_urlconf(previous)
    result: dict[str, Any] = {"status": response.status_code, "serving": False, "recorded": False}
    if response.status_code == 200:
        try:
            names = [family.name for family in text_string_to_metric_families(response.content.decode())]
            result["families"] = len(names)
            result["serving"] = "saasops_http_requests" in names
            result["detail"] = "ok" if result["serving"] else "saasops_http_requests missing from the answer"
        except Exception as exc:
            result["detail"] = f"not Prometheus text: {exc}"
    else:
        result["detail"] = f"HTTP {response.status_code}: {response.content.decode(errors='replace')[:200].strip()}"
    result["recorded"] = counted() > before
    raw = redis_client().get(metrics.LAST_SCRAPE_KEY)
    result["last_scrape_age_seconds"] = None if raw is None else round(time.time() - float(raw), 1)
    return result
