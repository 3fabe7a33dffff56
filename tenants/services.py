"""Writes to tenants: creation (schema cloned from the template), membership, history.

Every service is keyword-only, atomic, and records what it did in the tenant's history.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django_tenants.utils import get_public_schema_name, schema_context, schema_exists

from tenants.models import (
    ActorType,
    Domain,
    MemberRole,
    Membership,
    Tenant,
    TenantEvent,
    TenantKind,
    TenantStatus,
    User,
)
from tenants.slugs import schema_name_for, validate_slug


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


@transaction.atomic
def tenant_create(
    *,
    name: str,
    slug: str,
    status: str = TenantStatus.TRIALING,
    actor: User | None = None,
) -> Tenant:
    """Create a tenant: schema (cloned from the template), primary domain, workspace
    settings and a `created` history row. All-or-nothing: the schema is created inside the
    same transaction, so a failure leaves neither row nor schema."""
    validate_slug(slug)
    tenant = Tenant(name=name, slug=slug, schema_name=schema_name_for(slug), status=status)
    tenant.full_clean(exclude=["schema_name"])
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
