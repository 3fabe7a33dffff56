"""Per-tenant product configuration: plan preset + validated tenant overrides, versioned.

Effective config = the plan's `config_preset`, then the newest `TenantConfigVersion.overrides`
on top, plus read-only facts (plan, shard, version). Every change is a new version with a
diff; rollback is a new version that copies an old one's overrides. The effective config is
cached in Redis and the cache entry is dropped when the change commits, so a reader never
sees a stale config after the write returns.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django_tenants.utils import schema_context

from tenants.models import Tenant, TenantConfigVersion, User
from tenants.signals import tenant_changed


@dataclass(frozen=True)
class ConfigKey:
    kind: type
    check: Callable[[Any], str | None]  # returns an error message or None
    help: str
    tenant_editable: bool = False


def _int_range(low: int, high: int) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}"


_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")

CONFIG_KEYS: dict[str, ConfigKey] = {
    "model": ConfigKey(
        str, lambda v: None if _MODEL_RE.match(v) else "must be a model name (letters, digits, . _ : / -)", "LLM model"
    ),
    "max_tokens": ConfigKey(int, _int_range(1, 128_000), "Most output tokens per answer"),
    "retrieval_top_k": ConfigKey(int, _int_range(1, 100), "Passages retrieved per query"),
    "prompt_template": ConfigKey(
        str,
        lambda v: None if 1 <= len(v) <= 8000 else "must be 1 to 8,000 characters",
        "System prompt template",
        tenant_editable=True,
    ),
    "rate_limit_rps": ConfigKey(int, _int_range(1, 10_000), "Requests per second (token bucket rate)"),
    "rate_limit_burst": ConfigKey(int, _int_range(1, 100_000), "Burst size (token bucket capacity)"),
}


def config_validate(overrides: Any, *, tenant_editable_only: bool = False) -> dict[str, Any]:
    """Check an overrides dict; raise ValidationError naming every bad key, else return it."""
    if not isinstance(overrides, dict):
        raise ValidationError("Config overrides must be a JSON object of key: value.")
    errors: dict[str, str] = {}
    for key, value in overrides.items():
        spec = CONFIG_KEYS.get(key)
        if spec is None:
            errors[key] = f"unknown key; allowed keys are {', '.join(sorted(CONFIG_KEYS))}"
            continue
        if tenant_editable_only and not spec.tenant_editable:
            errors[key] = "cannot be changed from the workspace"
            continue
        # bool is an int subclass in Python; JSON true is not a number here.
        if not isinstance(value, spec.kind) or isinstance(value, bool):
            errors[key] = f"must be {'a whole number' if spec.kind is int else 'text'}, got {type(value).__name__}"
            continue
        problem = spec.check(value)
        if problem:
            errors[key] = problem
    rps, burst = overrides.get("rate_limit_rps"), overrides.get("rate_limit_burst")
    if isinstance(rps, int) and isinstance(burst, int) and "rate_limit_burst" not in errors and burst < rps:
        errors["rate_limit_burst"] = "must be at least rate_limit_rps"
    if errors:
        raise ValidationError({key: [message] for key, message in errors.items()})
    return overrides


def _cache_key(tenant_id: int) -> str:
    return f"tenant-config:{tenant_id}"


def config_current_version(*, tenant: Tenant) -> TenantConfigVersion | None:
    return TenantConfigVersion.objects.filter(tenant=tenant).order_by("-version").first()


def _effective(tenant: Tenant, version: TenantConfigVersion | None) -> dict[str, Any]:
    plan, shard = tenant.plan, tenant.vector_shard
    preset = dict(plan.config_preset) if plan else {}
    overrides = version.overrides if version else {}
    values = {**preset, **overrides}
    return {
        "tenant": tenant.slug,
        "version": version.version if version else 0,
        "plan": plan.code if plan else None,
        "status": tenant.status,
        "vector_shard": {"name": shard.name, "connection": shard.connection_label} if shard else None,
        "config": values,
        "overridden": sorted(overrides),
    }


def config_effective(*, tenant: Tenant) -> dict[str, Any]:
    """The effective config with its ETag, from cache when possible (public-schema key)."""
    with schema_context("public"):
        cached = cache.get(_cache_key(tenant.pk))
        if cached is not None:
            return cached
        tenant = Tenant.objects.select_related("plan", "vector_shard").get(pk=tenant.pk)
        body = _effective(tenant, config_current_version(tenant=tenant))
        body["etag"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
        cache.set(_cache_key(tenant.pk), body, 3600)
        return body


def config_cache_invalidate(*, tenant_ids: list[int]) -> None:
    """Drop cached configs when the surrounding transaction commits (never before: a reader
    in between would cache the old value again)."""

    def drop() -> None:
        with schema_context("public"):
            cache.delete_many([_cache_key(pk) for pk in tenant_ids])
            slugs = list(Tenant.objects.filter(pk__in=tenant_ids).values_list("slug", flat=True))
        tenant_changed.send(sender=Tenant, tenant_ids=list(tenant_ids), slugs=slugs)

    transaction.on_commit(drop)


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    return {
        key: [before.get(key), after.get(key)]
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    }


@transaction.atomic
def config_version_create(
    *,
    tenant: Tenant,
    overrides: dict[str, Any],
    actor: User | None = None,
    note: str = "",
    tenant_editable_only: bool = False,
) -> TenantConfigVersion:
    """Record a new config version holding `overrides` (the full set). Validated first;
    concurrent writers are serialised on the tenant row so version numbers never collide."""
    config_validate(overrides, tenant_editable_only=tenant_editable_only)
    locked = Tenant.objects.select_for_update(of=("self",)).select_related("plan").get(pk=tenant.pk)
    previous = config_current_version(tenant=locked)
    if tenant_editable_only and previous is not None:
        # The workspace edits its own keys only: staff-set keys are carried over unchanged.
        overrides = {**{k: v for k, v in previous.overrides.items() if not CONFIG_KEYS[k].tenant_editable}, **overrides}
    preset = dict(locked.plan.config_preset) if locked.plan_id else {}
    before = {**preset, **(previous.overrides if previous else {})}
    after = {**preset, **overrides}
    rps, burst = after.get("rate_limit_rps"), after.get("rate_limit_burst")
    if isinstance(rps, int) and isinstance(burst, int) and burst < rps:
        # Checked on the effective values: overriding only the rate can undercut the plan's burst.
        raise ValidationError(
            {"rate_limit_burst": [f"must be at least rate_limit_rps ({rps}); the effective burst would be {burst}"]}
        )
    version = TenantConfigVersion.objects.create(
        tenant=locked,
        version=(previous.version + 1) if previous else 1,
        overrides=overrides,
        changes=_diff(before, after),
        note=note[:500],
        created_by=actor,
        actor_type="system" if actor is None else ("staff" if actor.is_staff else "customer"),
    )
    config_cache_invalidate(tenant_ids=[locked.pk])
    if previous is not None:  # the initial version is part of provisioning's own history row
        from tenants.services import tenant_event_record

        tenant_event_record(
            tenant=locked,
            kind="config_changed",
            actor=actor,
            note=version.note,
            details={"version": version.version, "changes": version.changes},
        )
    return version


@transaction.atomic
def config_rollback(
    *, tenant: Tenant, to_version: int, actor: User | None = None, note: str = ""
) -> TenantConfigVersion:
    """A new version whose overrides are those of `to_version` (history is never rewritten)."""
    target = TenantConfigVersion.objects.filter(tenant=tenant, version=to_version).first()
    if target is None:
        raise ValidationError(f"Version {to_version} does not exist for this tenant.")
    return config_version_create(
        tenant=tenant,
        overrides=dict(target.overrides),
        actor=actor,
        note=note or f"Rollback to version {to_version}",
    )
