"""What belongs to one customer alone. These tables live in each tenant's own schema:
dropping the schema removes them."""

from __future__ import annotations

from django.db import models


class WorkspaceSettings(models.Model):
    """The workspace's own settings: one row per tenant schema."""

    display_name = models.CharField(max_length=200)
    billing_email = models.EmailField(blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "workspace settings"

    def __str__(self) -> str:
        return self.display_name

    @classmethod
    def current(cls) -> WorkspaceSettings:
        """The settings row of the schema the connection is on (created on first read)."""
        settings, _ = cls.objects.get_or_create(pk=1, defaults={"display_name": ""})
        return settings


class ApiKeyScope(models.TextChoices):
    READ_USAGE = "read_usage", "Read usage"
    WRITE_EVENTS = "write_events", "Write events"


class ApiKey(models.Model):
    """A tenant API key (tenant host only). Stored as a SHA-256 hash; shown once."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_by_id = models.BigIntegerField(null=True, blank=True, help_text="User id (public schema).")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
