"""API keys from the workspace pages: workspace.keys does the key itself; these add the
tenant's history row in the same transaction."""

from __future__ import annotations

from django.db import transaction

from tenants.models import Tenant, User
from tenants.services import tenant_event_record
from workspace.keys import api_key_create, api_key_revoke
from workspace.models import ApiKey


@transaction.atomic
def api_key_issue(*, tenant: Tenant, name: str, scopes: list[str], actor: User) -> tuple[ApiKey, str]:
    """A new key (raw value returned once, never stored) and its history row."""
    key, raw = api_key_create(name=name, scopes=scopes, created_by_id=actor.pk)
    tenant_event_record(
        tenant=tenant, kind="api_key_created", actor=actor, details={"name": key.name, "prefix": key.prefix,
                                                                     "scopes": key.scopes},
    )  # fmt: skip
    return key, raw


@transaction.atomic
def api_key_withdraw(*, tenant: Tenant, key: ApiKey, actor: User) -> ApiKey:
    """Revoke a key: the next request with it is refused (keys are never cached). Idempotent:
    revoking a revoked key changes nothing and records nothing."""
    was_active = ApiKey.objects.select_for_update().get(pk=key.pk).revoked_at is None
    key = api_key_revoke(key=key)
    if was_active:
        tenant_event_record(
            tenant=tenant, kind="api_key_revoked", actor=actor, details={"name": key.name, "prefix": key.prefix}
        )
    return key
