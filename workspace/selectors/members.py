"""Reads of the workspace's people: members (public schema, by tenant), pending invitations
(this tenant's schema) and seats against the plan."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from tenants.models import MemberRole, Membership, PlanLimit, Resource, Tenant
from workspace.models import Invitation


@dataclass
class SeatsSummary:
    members: int
    pending: int
    included: int | None  # None: unlimited

    @property
    def used(self) -> int:
        return self.members + self.pending

    @property
    def full(self) -> bool:
        return self.included is not None and self.used >= self.included

    @property
    def percent(self) -> float | None:
        if self.included is None:
            return None
        return 100.0 if not self.included else self.used * 100 / self.included

    @property
    def state(self) -> str:
        if self.percent is None:
            return "unlimited"
        return "full" if self.percent >= 100 else "warn" if self.percent >= 80 else "ok"

    @property
    def bar_percent(self) -> float:
        return min(100.0, self.percent or 0.0)


def members_list(*, tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user").order_by("created_at", "pk")


def member_get(*, tenant: Tenant, membership_id: int) -> Membership | None:
    """A membership of this tenant only: another tenant's membership id is not found."""
    return Membership.objects.filter(tenant=tenant, pk=membership_id).select_related("user").first()


def pending_invitations(*, now: datetime) -> QuerySet[Invitation]:
    """Open invitations of the current tenant schema (not accepted, revoked or expired)."""
    return Invitation.objects.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now)


def seats_included(*, tenant: Tenant) -> int | None:
    if tenant.plan_id is None:
        return None
    limit = PlanLimit.objects.filter(plan_id=tenant.plan_id, resource=Resource.SEATS).first()
    return None if limit is None else limit.included


def seats_summary(*, tenant: Tenant, now: datetime) -> SeatsSummary:
    """Seats in use: members plus pending invitations (an invitation holds its seat)."""
    return SeatsSummary(
        members=Membership.objects.filter(tenant=tenant).count(),
        pending=pending_invitations(now=now).count(),
        included=seats_included(tenant=tenant),
    )


def owner_count(*, tenant: Tenant) -> int:
    return Membership.objects.filter(tenant=tenant, role=MemberRole.OWNER).count()
