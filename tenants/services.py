"""Writes to tenants: creation (schema cloned from the template), membership, history.

Every service is keyword-only, atomic, and records what it did in the tenant's history.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django_tenants.utils import get_public_schema_name, schema_context, schema_exists

from tenants.models import (
    ActorType,
    BillingInterval,
    Domain,
    MemberRole,
    Membership,
    Plan,
    Tenant,
    TenantEvent,
    TenantKind,
    TenantStatus,
    User,
)
from tenants.slugs import schema_name_for, slug_alternative, validate_slug


def tenant_host(*, slug: str) -> str:
    return f"{slug}.{settings.BASE_DOMAIN}"


@transaction.atomic
def public_tenant_ensure() -> Tenant:
    """The public schema's own row and domain (BASE_DOMAIN). Idempotent."""
    tenant, _ = Tenant.objects.get_or_create(
        schema_name=get_public_schema_name(),
        defaults={"name": "Public", "slug": "public", "kind": TenantKind.PUBLIC, "status": TenantStatus.ACTIVE},
    )
    Domain.objects.get_or_create(domain=settings.BASE_DOMAIN, defaults={"tenant": tenant, "is_primary": True})
    return tenant


def template_tenant_ensure() -> Tenant:
    """The template schema new tenants are cloned from. It is a Tenant row so that
    `migrate_schemas` keeps it in step with every migration. Idempotent; the first call
    runs the tenant migrations once (about a second)."""
    tenant = Tenant.objects.filter(schema_name=settings.TENANT_BASE_SCHEMA).first()
    if tenant is None:
        tenant = Tenant(
            schema_name=settings.TENANT_BASE_SCHEMA,
            name="Template",
            slug="tenant-template",
            kind=TenantKind.TEMPLATE,
            status=TenantStatus.ACTIVE,
        )
        tenant.save(verbosity=0)
    elif not schema_exists(tenant.schema_name):
        tenant.save(verbosity=0)  # django-tenants re-creates a missing schema on save
    return tenant


def tenant_event_record(
    *,
    tenant: Tenant,
    kind: str,
    actor: User | None = None,
    actor_type: str | None = None,
    note: str = "",
    details: dict | None = None,
) -> TenantEvent:
    if actor_type is None:
        actor_type = ActorType.SYSTEM if actor is None else (ActorType.STAFF if actor.is_staff else ActorType.CUSTOMER)
    return TenantEvent.objects.create(
        tenant=tenant, kind=kind, actor=actor, actor_type=actor_type, note=note, details=details or {}
    )


class SlugTaken(ValidationError):
    """Another tenant has this slug."""


@transaction.atomic
def tenant_create(
    *,
    name: str,
    slug: str,
    plan: Plan | None = None,
    status: str = TenantStatus.TRIALING,
    billing_interval: str = BillingInterval.MONTHLY,
    trial_ends_at: datetime | None = None,
    provisioning_key: str | None = None,
    actor: User | None = None,
) -> Tenant:
    """Create a tenant: schema (cloned from the template), primary domain, workspace
    settings and a `created` history row. All-or-nothing: the schema is created inside the
    same transaction, so a failure leaves neither row nor schema."""
    validate_slug(slug)
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValidationError({"name": ["The workspace name must be 1 to 200 characters."]})
    if Tenant.objects.filter(Q(slug=slug) | Q(schema_name=schema_name_for(slug))).exists():
        raise SlugTaken({"slug": [f"The address “{slug}” is taken; try “{slug_alternative(slug)}”."]})
    tenant = Tenant(
        name=name,
        slug=slug,
        schema_name=schema_name_for(slug),
        status=status,
        plan=plan,
        billing_interval=billing_interval,
        trial_ends_at=trial_ends_at,
        provisioning_key=provisioning_key,
    )
    tenant.save(verbosity=0)
    Domain.objects.create(domain=tenant_host(slug=slug), tenant=tenant, is_primary=True)
    from workspace.models import WorkspaceSettings

    with schema_context(tenant.schema_name):
        WorkspaceSettings.objects.create(pk=1, display_name=name)
    tenant_event_record(tenant=tenant, kind="created", actor=actor)
    return tenant


@transaction.atomic
def membership_add(*, tenant: Tenant, user: User, role: str = MemberRole.VIEWER) -> Membership:
    membership, _ = Membership.objects.update_or_create(user=user, tenant=tenant, defaults={"role": role})
    return membership


@transaction.atomic
def tenant_plan_change(*, tenant: Tenant, plan: Plan, actor: User | None = None, reason: str = "") -> Tenant:
    """Put the tenant on another plan at once (limits and preset follow immediately).
    A retired plan cannot be chosen anew; tenants already on one keep it (grandfathered).
    Billing's proration is applied by the lifecycle layer that calls this."""
    from tenants.config import config_cache_invalidate

    locked = Tenant.objects.select_for_update(of=("self",)).select_related("plan").get(pk=tenant.pk)
    if locked.plan_id == plan.pk:
        raise ValidationError(f"The tenant is already on {plan.name}.")
    if plan.retired_at is not None:
        raise ValidationError(f"{plan.name} is retired and cannot be chosen; pick a current plan.")
    old = locked.plan
    Tenant.objects.filter(pk=locked.pk).update(plan=plan)
    tenant.plan = plan
    tenant_event_record(
        tenant=locked,
        kind="plan_changed",
        actor=actor,
        note=reason,
        details={"from": old.code if old else None, "to": plan.code},
    )
    config_cache_invalidate(tenant_ids=[locked.pk])
    return tenant


# Staff roles. Support runs tenants day to day but cannot touch money or pricing;
# finance reads tenants and owns pricing and invoices but cannot change config.
STAFF_GROUPS: dict[str, list[str]] = {
    "support": [
        "tenants.view_tenant",
        "tenants.change_tenant",
        "tenants.view_domain",
        "tenants.view_membership",
        "tenants.add_membership",
        "tenants.change_membership",
        "tenants.delete_membership",
        "tenants.view_tenantevent",
        "tenants.view_plan",
        "tenants.view_planlimit",
        "tenants.view_tenantconfigversion",
        "tenants.add_tenantconfigversion",
        "tenants.view_vectorshard",
        "tenants.view_shardmove",
        "tenants.change_shardmove",
        "tenants.view_user",
        "lifecycle.view_provisioningattempt",
        # Invoices and subscriptions to answer customers' questions; no money changes.
        "billing.view_invoice",
        "billing.view_invoiceline",
        "billing.view_creditnote",
        "billing.view_billingprofile",
        "billing.view_subscription",
        "billing.view_stripeevent",
        "billing.view_paymentattempt",
        # Operations: readiness audits (run and read), usage and alerts.
        "operations.view_readinessrun",
        "operations.add_readinessrun",
        "operations.view_readinessresult",
        "metering.view_usageevent",
        "metering.view_usagealert",
        "metering.view_meter",
    ],
    "finance": [
        "tenants.view_tenant",
        "tenants.view_domain",
        "tenants.view_membership",
        "tenants.view_tenantevent",
        "tenants.view_plan",
        "tenants.add_plan",
        "tenants.change_plan",
        "tenants.view_planlimit",
        "tenants.add_planlimit",
        "tenants.change_planlimit",
        "tenants.delete_planlimit",
        "tenants.view_tenantconfigversion",
        "tenants.view_user",
        # Invoice review: approving and voiding are `change_invoice`, credit notes `add_creditnote`.
        "billing.view_invoice",
        "billing.change_invoice",
        "billing.view_invoiceline",
        "billing.view_creditnote",
        "billing.add_creditnote",
        "billing.view_billingprofile",
        "billing.change_billingprofile",
        "billing.view_subscription",
        "billing.view_coupon",
        "billing.add_coupon",
        "billing.change_coupon",
        "billing.view_discount",
        "billing.add_discount",
        "billing.change_discount",
        "billing.delete_discount",
        "billing.view_stripeevent",
        "billing.view_paymentattempt",
        "billing.view_dunningpolicy",
        "billing.change_dunningpolicy",
        # Cost: the price book, provider bills, reconciliation, business metrics.
        "metering.view_pricebookentry",
        "metering.add_pricebookentry",
        "metering.view_usageevent",
        "metering.view_meter",
        "operations.view_providerbill",
        "operations.add_providerbill",
        "operations.view_billline",
        "operations.view_reconciliationrun",
        "operations.add_reconciliationrun",
        "operations.view_reconciliationitem",
        "operations.view_tenantreconciliation",
        "operations.view_metricssnapshot",
        "operations.add_metricssnapshot",
    ],
}


def staff_groups_ensure(extra: dict[str, list[str]] | None = None) -> dict[str, Group]:
    """Create or refresh the staff groups with exactly their permissions. Idempotent; run by
    `bootstrap` on every deploy so permissions of new models reach the groups."""
    groups: dict[str, Group] = {}
    spec = {name: list(perms) for name, perms in STAFF_GROUPS.items()}
    for name, perms in (extra or {}).items():
        spec.setdefault(name, []).extend(perms)
    for name, perms in spec.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = []
        for dotted in perms:
            app_label, codename = dotted.split(".", 1)
            permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if permission is None:
                raise LookupError(f"permission {dotted} does not exist (run migrations first)")
            wanted.append(permission)
        group.permissions.set(wanted)
        groups[name] = group
    return groups
