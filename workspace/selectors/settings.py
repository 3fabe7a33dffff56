"""Reads for the settings page: the effective product config and its version history."""

from __future__ import annotations

from typing import Any

from tenants.config import CONFIG_KEYS, config_effective
from tenants.models import Tenant, TenantConfigVersion


def editable_config(*, tenant: Tenant) -> dict[str, Any]:
    """The tenant-editable keys with their effective values and whether the workspace set them."""
    effective = config_effective(tenant=tenant)
    return {
        key: {
            "value": effective["config"].get(key, ""),
            "overridden": key in effective["overridden"],
            "help": spec.help,
        }
        for key, spec in CONFIG_KEYS.items()
        if spec.tenant_editable
    }


def config_history(*, tenant: Tenant, limit: int = 20) -> list[TenantConfigVersion]:
    """The tenant's config versions, newest first (each with the diff it made)."""
    return list(
        TenantConfigVersion.objects.filter(tenant=tenant).select_related("created_by").order_by("-version")[:limit]
    )
