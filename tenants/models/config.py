"""Versioned per-tenant configuration: every change is a new row, never an edit."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class TenantConfigVersion(models.Model):
    """One version of a tenant's config overrides (the full override set, not a delta).

    Effective config = plan preset + `overrides` of the newest version. `changes` records
    what this version changed against the one before: {key: [old, new]} of the effective
    config, so the history reads as a diff.
    """

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="config_versions")
    version = models.PositiveIntegerField()
    overrides = models.JSONField(default=dict, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    note = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_type = models.CharField(max_length=10, default="system")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "-version"]
        constraints = [models.UniqueConstraint(fields=["tenant", "version"], name="configversion_unique")]

    def __str__(self) -> str:
        return f"{self.tenant_id} v{self.version}"
