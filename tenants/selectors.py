"""Reads of tenants, members and history. Every selector takes its tenant explicitly."""

from __future__ import annotations

from django.db.models import QuerySet

from tenants.models import Membership, Tenant, TenantEvent, User


def membership_get(*, user: User, tenant: Tenant) -> Membership | None:
    return Membership.objects.filter(user=user, tenant=tenant).first()


def tenant_get_by_slug(*, slug: str) -> Tenant | None:
    return Tenant.objects.customers().filter(slug=slug).first()


def tenant_events(*, tenant: Tenant) -> QuerySet[TenantEvent]:
    return TenantEvent.objects.filter(tenant=tenant).select_related("actor")


def tenant_members(*, tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user").order_by("created_at")
