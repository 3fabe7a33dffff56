"""Lifecycle records kept in the public schema."""

from __future__ import annotations

from django.db import models


class ProvisioningAttempt(models.Model):
    """Every call of `tenant_provision`: what was asked, how it ended, how long it took.

    Written outside the provisioning transaction, so a failure that rolled the tenant back
    is still on record with its error.
    """

    class Outcome(models.TextChoices):
        CREATED = "created", "Created"
        EXISTING = "existing", "Already provisioned (idempotent repeat)"
        FAILED = "failed", "Failed (rolled back)"

    key = models.CharField(max_length=100, db_index=True, help_text="Idempotency key of the request (signup id).")
    slug = models.CharField(max_length=40)
    plan_code = models.CharField(max_length=40, blank=True)
    owner_email = models.EmailField(blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.slug}: {self.outcome}"
