"""What belongs to one customer alone. These tables live in each tenant's own schema:
dropping the schema removes them."""

from __future__ import annotations

from datetime import datetime

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


class Department(models.Model):
    """A cost centre. `code` is the `department` property the product sends with each event
    (e.g. "legal"); usage is attributed to it by that value. A monthly budget (USD, per
    billing period) is optional."""

    code = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=100)
    monthly_budget_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "code"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(monthly_budget_usd__isnull=True) | models.Q(monthly_budget_usd__gt=0),
                name="department_budget_positive",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class DepartmentBudgetAlert(models.Model):
    """A department's cost crossed its budget in a billing period: recorded once per period
    (the unique constraint makes a repeat check a no-op) and emailed to the owner."""

    department = models.ForeignKey(Department, on_delete=models.CASCADE, related_name="budget_alerts")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    budget_usd = models.DecimalField(max_digits=12, decimal_places=2)
    cost_usd = models.DecimalField(max_digits=20, decimal_places=6, help_text="Cost when the alert was raised.")
    created_at = models.DateTimeField(auto_now_add=True)
    emailed_to = models.EmailField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["department", "period_start"], name="budgetalert_once_per_period")
        ]

    def __str__(self) -> str:
        return f"{self.department.code} over budget from {self.period_start:%Y-%m-%d}"


class Invitation(models.Model):
    """An invitation to join the workspace. The token is stored as a SHA-256 hash (the raw
    token is only in the emailed link); it is single-use and expires. It lives in the
    tenant's schema, so another tenant's host cannot find it."""

    email = models.EmailField()
    role = models.CharField(max_length=10)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by_id = models.BigIntegerField(null=True, blank=True, help_text="User id (public schema).")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_user_id = models.BigIntegerField(null=True, blank=True, help_text="User id (public schema).")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} as {self.role}"

    def is_pending(self, now: datetime) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > now
