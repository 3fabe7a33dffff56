"""Workspace settings: its name, the billing email, and the product settings a workspace
may change itself (tenants.config keys marked tenant-editable, e.g. prompt_template)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from billing.models import BillingProfile
from tenants.config import config_effective, config_version_create
from tenants.models import Tenant, TenantConfigVersion, User
from tenants.services import tenant_event_record
from workspace.models import WorkspaceSettings


@transaction.atomic
def workspace_rename(*, tenant: Tenant, name: str, actor: User) -> WorkspaceSettings:
    """The workspace's name, shown to its members (the tenant's name and the workspace
    settings row change together; the address, its slug, never changes)."""
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValidationError({"name": ["The workspace name must be 1 to 200 characters."]})
    settings = WorkspaceSettings.current()
    old = settings.display_name or tenant.name
    if old == name and tenant.name == name:
        return settings
    WorkspaceSettings.objects.filter(pk=settings.pk).update(display_name=name)
    Tenant.objects.filter(pk=tenant.pk).update(name=name)
    tenant.name = name
    tenant_event_record(tenant=tenant, kind="workspace_renamed", actor=actor, details={"from": old, "to": name})
    settings.refresh_from_db()
    return settings


@transaction.atomic
def billing_email_set(*, tenant: Tenant, email: str, actor: User) -> BillingProfile:
    """Where invoices go. Billing reads BillingProfile.billing_email; the workspace settings
    row keeps a copy for the workspace's own pages."""
    email = (email or "").strip()
    if email:
        if len(email) > 254:
            raise ValidationError({"billing_email": ["An email address has at most 254 characters."]})
        validate_email(email)
    profile, _ = BillingProfile.objects.select_for_update().get_or_create(tenant=tenant)
    old = profile.billing_email
    if old == email:
        return profile
    BillingProfile.objects.filter(pk=profile.pk).update(billing_email=email)
    WorkspaceSettings.objects.filter(pk=WorkspaceSettings.current().pk).update(billing_email=email)
    profile.billing_email = email
    tenant_event_record(tenant=tenant, kind="billing_email_changed", actor=actor, details={"from": old, "to": email})
    return profile


def prompt_template_set(*, tenant: Tenant, template: str, actor: User) -> TenantConfigVersion | None:
    """A new config version with the workspace's prompt template (validated by the config's
    own rules; staff-set keys are carried over unchanged). ValidationError names the key.
    None when the template is already in effect (no empty version is recorded)."""
    if config_effective(tenant=tenant)["config"].get("prompt_template") == template:
        return None
    return config_version_create(
        tenant=tenant,
        overrides={"prompt_template": template},
        actor=actor,
        note="Changed in the workspace",
        tenant_editable_only=True,
    )
