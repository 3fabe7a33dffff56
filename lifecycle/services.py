"""Provisioning orchestration: one call makes a whole, working tenant — or nothing."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.invoicing import subscription_create
from lifecycle.models import ProvisioningAttempt
from tenants.config import config_version_create
from tenants.models import BillingInterval, MemberRole, Plan, Tenant, TenantStatus, User
from tenants.services import membership_add, tenant_create, tenant_event_record
from tenants.shards import shard_assign

log = logging.getLogger(__name__)


class ProvisioningError(Exception):
    """Provisioning failed and was rolled back; the attempt (with this error) is on record."""


def _owner_get_or_create(*, email: str, password: str | None) -> User:
    email = email.strip()
    user = User.objects.filter(email__iexact=email).first()
    if user is not None:
        return user
    username = email.lower()[:150]
    user = User(username=username, email=email)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save()
    return user


def tenant_provision(
    *,
    key: str,
    name: str,
    slug: str,
    owner_email: str,
    plan: Plan,
    owner_password: str | None = None,
    billing_interval: str = BillingInterval.MONTHLY,
    actor: User | None = None,
) -> Tenant:
    """Create a tenant end to end: schema (cloned from the template), domain, workspace
    settings, owner membership, vector shard, subscription (billing from the trial's end),
    initial config version (v1) and a `provisioned` history row.

    Idempotent on `key`: a second call with the same key — also concurrently — returns the
    tenant the first made. All-or-nothing: one transaction holds rows and schema, so a
    failure at any step leaves no tenant, schema, domain or membership; the failure is
    recorded in ProvisioningAttempt and raised as ProvisioningError (ValidationError for
    bad input, such as a taken slug)."""
    started = time.perf_counter()

    def record(outcome: str, tenant: Tenant | None = None, error: str = "") -> None:
        ProvisioningAttempt.objects.create(
            key=key[:100],
            slug=slug[:40],
            plan_code=plan.code,
            owner_email=owner_email[:254],
            outcome=outcome,
            error=error[:5000],
            duration_ms=int((time.perf_counter() - started) * 1000),
            tenant=tenant,
        )

    existing = Tenant.objects.filter(provisioning_key=key).first()
    if existing is not None:
        record(ProvisioningAttempt.Outcome.EXISTING, existing)
        return existing
    if plan.retired_at is not None:
        raise ValidationError({"plan": [f"{plan.name} is no longer offered; choose a current plan."]})
    try:
        with transaction.atomic():
            trialing = plan.trial_days > 0
            tenant = tenant_create(
                name=name,
                slug=slug,
                plan=plan,
                status=TenantStatus.TRIALING if trialing else TenantStatus.ACTIVE,
                billing_interval=billing_interval,
                trial_ends_at=timezone.now() + timedelta(days=plan.trial_days) if trialing else None,
                provisioning_key=key,
                actor=actor,
            )
            owner = _owner_get_or_create(email=owner_email, password=owner_password)
            membership_add(tenant=tenant, user=owner, role=MemberRole.OWNER)
            shard = shard_assign(tenant=tenant)
            subscription_create(
                tenant=tenant,
                plan_id=plan.pk,
                interval=billing_interval,
                started_at=tenant.created_at,
                billing_starts_at=tenant.trial_ends_at or tenant.created_at,
            )
            config_version_create(tenant=tenant, overrides={}, actor=actor, note="Initial configuration")
            tenant_event_record(
                tenant=tenant,
                kind="provisioned",
                actor=actor,
                details={
                    "plan": plan.code,
                    "owner": owner.email,
                    "shard": shard.name if shard else None,
                    "ms": int((time.perf_counter() - started) * 1000),
                },
            )
    except IntegrityError as exc:
        # A concurrent call with the same key won the race: return what it made.
        winner = Tenant.objects.filter(provisioning_key=key).first()
        if winner is not None:
            record(ProvisioningAttempt.Outcome.EXISTING, winner)
            return winner
        record(ProvisioningAttempt.Outcome.FAILED, error=f"IntegrityError: {exc}")
        raise ValidationError({"slug": [f"The address “{slug}” was just taken; choose another."]}) from exc
    except ValidationError as exc:
        # "address taken" may be the concurrent call with the same key that just committed.
        winner = Tenant.objects.filter(provisioning_key=key).first()
        if winner is not None:
            record(ProvisioningAttempt.Outcome.EXISTING, winner)
            return winner
        record(ProvisioningAttempt.Outcome.FAILED, error="; ".join(exc.messages))
        raise
    except Exception as exc:
        log.exception("provisioning %s failed", slug)
        record(ProvisioningAttempt.Outcome.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise ProvisioningError(f"Provisioning {slug} failed and was rolled back: {exc}") from exc
    record(ProvisioningAttempt.Outcome.CREATED, tenant)
    return tenant
