"""The tenant status state machine. This module owns the field and its transitions;
billing (dunning) and lifecycle (trials, cancellation) drive them through `tenant_status_change`.

    trialing ──► active ◄──► past_due
       │           │            │
       └─────┬─────┴────────────┘
             ▼
         suspended ──► active (reactivated)
             │
    any ──► cancelled ──► active (reactivated before deletion)
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from tenants.models import Tenant, TenantStatus, User

S = TenantStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    S.TRIALING: frozenset({S.ACTIVE, S.PAST_DUE, S.SUSPENDED, S.CANCELLED}),
    S.ACTIVE: frozenset({S.PAST_DUE, S.SUSPENDED, S.CANCELLED}),
    S.PAST_DUE: frozenset({S.ACTIVE, S.SUSPENDED, S.CANCELLED}),
    S.SUSPENDED: frozenset({S.ACTIVE, S.CANCELLED}),
    S.CANCELLED: frozenset({S.ACTIVE}),
}

# The event recorded for a transition when the caller names none.
DEFAULT_EVENT: dict[str, str] = {
    S.ACTIVE: "activated",
    S.PAST_DUE: "payment_past_due",
    S.SUSPENDED: "suspended",
    S.CANCELLED: "cancelled",
    S.TRIALING: "trial_started",
}


class IllegalTransition(ValidationError):
    """The tenant cannot go from its status to the one asked for."""


def transition_allowed(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


@transaction.atomic
def tenant_status_change(
    *,
    tenant: Tenant,
    to: str,
    actor: User | None = None,
    reason: str = "",
    event: str | None = None,
    details: dict | None = None,
) -> Tenant:
    """Move the tenant to `to`, recording who, why and from what. The row is locked so two
    concurrent changes apply one after the other; an illegal move raises IllegalTransition
    and changes nothing."""
    from tenants.config import config_cache_invalidate
    from tenants.services import tenant_event_record

    if to not in TenantStatus.values:
        raise IllegalTransition(f"“{to}” is not a tenant status.")
    locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if locked.kind != "customer":
        raise IllegalTransition("Only customer tenants have a status to change.")
    current = locked.status
    if not transition_allowed(current, to):
        allowed = ", ".join(sorted(TRANSITIONS.get(current, ()))) or "none"
        raise IllegalTransition(
            f"A {TenantStatus(current).label.lower()} tenant cannot become {TenantStatus(to).label.lower()} "
            f"(allowed from {current}: {allowed})."
        )
    now = timezone.now()
    Tenant.objects.filter(pk=locked.pk).update(status=to, status_changed_at=now)
    tenant.status, tenant.status_changed_at = to, now
    reactivation = to == S.ACTIVE and current in (S.SUSPENDED, S.CANCELLED)
    tenant_event_record(
        tenant=locked,
        kind=event or ("reactivated" if reactivation else DEFAULT_EVENT[to]),
        actor=actor,
        note=reason,
        details={"from": current, "to": to, **(details or {})},
    )
    config_cache_invalidate(tenant_ids=[locked.pk])
    return tenant


def tenant_suspend(*, tenant: Tenant, actor: User | None = None, reason: str = "") -> Tenant:
    return tenant_status_change(tenant=tenant, to=S.SUSPENDED, actor=actor, reason=reason)


def tenant_reactivate(*, tenant: Tenant, actor: User | None = None, reason: str = "") -> Tenant:
    """Bring a suspended or cancelled tenant back (trial conversion and payment recovery are
    other transitions to active, recorded under their own names)."""
    current = Tenant.objects.filter(pk=tenant.pk).values_list("status", flat=True).first()
    if current not in (S.SUSPENDED, S.CANCELLED):
        raise IllegalTransition(f"Only a suspended or cancelled tenant can be reactivated (this one is {current}).")
    return tenant_status_change(tenant=tenant, to=S.ACTIVE, actor=actor, reason=reason, event="reactivated")


def tenant_cancel(*, tenant: Tenant, actor: User | None = None, reason: str = "") -> Tenant:
    return tenant_status_change(tenant=tenant, to=S.CANCELLED, actor=actor, reason=reason)
