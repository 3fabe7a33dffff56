"""The demo data (saasops/demo_usage.py): history, invoices and end states that agree with
each other — a cancelled tenant is billed up to its cancellation and not after."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import Invoice, Subscription, SubscriptionStatus
from metering.models import UsageEvent
from saasops.demo_usage import CANCELLED_DAYS_AGO, demo_usage_load
from tenants.models import Tenant, TenantStatus
from tenants.status import tenant_status_change

pytestmark = pytest.mark.django_db


def test_demo_history_of_an_active_and_a_cancelled_tenant(make_tenant):
    active, cancelled = make_tenant("starter"), make_tenant("starter")
    for tenant in (active, cancelled):
        tenant_status_change(tenant=tenant, to=TenantStatus.ACTIVE, reason="demo: trial converted")
    tenant_status_change(tenant=cancelled, to=TenantStatus.CANCELLED, reason="demo data")
    tenants = list(Tenant.objects.select_related("plan").filter(pk__in=[active.pk, cancelled.pk]).order_by("pk"))
    stored = demo_usage_load(tenants=tenants, seed=7)
    assert stored == UsageEvent.objects.filter(tenant=active).count() > 1_000
    assert not UsageEvent.objects.filter(tenant=cancelled).exists()
    # the active tenant: two months of history, its ended periods drafted for review
    assert Invoice.objects.filter(tenant=active, status="draft").count() >= 1
    # the cancelled one: its subscription ended CANCELLED_DAYS_AGO; nothing billed after that
    sub = Subscription.objects.get(tenant=cancelled)
    ended = timezone.now() - timedelta(days=CANCELLED_DAYS_AGO)
    assert sub.status == SubscriptionStatus.CANCELLED and abs(sub.ended_at - ended) < timedelta(hours=1)
    assert not Invoice.objects.filter(tenant=cancelled, period_start__gte=sub.ended_at).exists()
    assert all(inv.period_end <= sub.ended_at + timedelta(days=31) for inv in Invoice.objects.filter(tenant=cancelled))
    cancelled.refresh_from_db()
    assert abs(cancelled.status_changed_at - ended) < timedelta(hours=1)
