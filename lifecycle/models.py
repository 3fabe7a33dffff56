"""Lifecycle records kept in the public schema."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from tenants.models import Tenant


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


class SignupStatus(models.TextChoices):
    PENDING = "pending", "Waiting for the email link"
    SUPERSEDED = "superseded", "Replaced by a newer signup"
    PROVISIONING = "provisioning", "Verified; workspace being created"
    NEEDS_SLUG = "needs_slug", "Verified; address taken meanwhile, waiting for another"
    READY = "ready", "Workspace created"
    FAILED = "failed", "Provisioning failed"


class Signup(models.Model):
    """A self-service signup from the pricing page until its workspace exists.

    The verification link names this row (not just the email address), so clicking it
    provisions exactly the company, address, plan and password that were asked for with it;
    a newer signup of the same address supersedes older ones. Its id is the provisioning
    key: a link clicked twice makes one workspace.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    email = models.EmailField()
    company = models.CharField(max_length=200)
    slug = models.CharField(max_length=40)
    plan = models.ForeignKey("tenants.Plan", on_delete=models.PROTECT, related_name="+")
    interval = models.CharField(max_length=10, default="monthly")
    # The password chosen with this signup (hashed); set on the account when it is verified.
    password_hash = models.CharField(max_length=200)
    status = models.CharField(max_length=12, choices=SignupStatus.choices, default=SignupStatus.PENDING, db_index=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    link_sent_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    provisioned_at = models.DateTimeField(null=True, blank=True)
    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["email", "-created_at"], name="signup_email_time")]

    def __str__(self) -> str:
        return f"{self.email} → {self.slug} ({self.status})"

    @property
    def provisioning_key(self) -> str:
        return f"signup:{self.pk}"


class HandoffToken(models.Model):
    """A single-use, short-lived ticket that signs a person into one tenant host.

    Sessions are host-only, so the public host cannot sign anyone into `<slug>.<domain>`; it
    mints one of these instead and the tenant host redeems it. Stored as a SHA-256 hash."""

    token_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    purpose = models.CharField(max_length=20, default="signup")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"hand-off to {self.tenant_id} for {self.user_id}"


class LifecycleNotice(models.Model):
    """An email the lifecycle sends at most once per tenant and occasion (a trial reminder
    for one trial end, say): the unique key is claimed before sending."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=40)
    key = models.CharField(max_length=100, help_text="What makes the occasion unique, e.g. the trial end date.")
    recipient = models.EmailField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["tenant", "kind", "key"], name="lifecyclenotice_once")]

    def __str__(self) -> str:
        return f"{self.kind} {self.key} for {self.tenant_id}"


class CancellationReason(models.TextChoices):
    TOO_EXPENSIVE = "too_expensive", "Too expensive"
    MISSING_FEATURES = "missing_features", "Missing features"
    NOT_USING = "not_using", "Not using it enough"
    SWITCHED = "switched", "Switched to another product"
    QUALITY = "quality", "Answers not good enough"
    OTHER = "other", "Other"


class Cancellation(models.Model):
    """Why a tenant cancelled (kept for churn analysis, also after the tenant is deleted)."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    plan_code = models.CharField(max_length=40)
    reason = models.CharField(max_length=20, choices=CancellationReason.choices)
    comment = models.TextField(blank=True)
    immediate = models.BooleanField(default=False)
    effective_at = models.DateTimeField()
    actor_type = models.CharField(max_length=10)
    created_at = models.DateTimeField(auto_now_add=True)
    reactivated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.reason}"


class TenantDeletion(models.Model):
    """A tenant whose data was deleted after its retention period (row kept, anonymised)."""

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    schema_name = models.CharField(max_length=63)
    members_removed = models.PositiveIntegerField(default=0)
    deleted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-deleted_at"]

    def __str__(self) -> str:
        return f"tenant {self.tenant_id} deleted {self.deleted_at:%Y-%m-%d}"


class LifecycleTenant(Tenant):
    """Tenants as the lifecycle staff page shows them (trials, plan changes, cancellation)."""

    class Meta:
        proxy = True
        verbose_name = "tenant lifecycle"
        verbose_name_plural = "tenant lifecycle (trials, plans, cancellation)"
