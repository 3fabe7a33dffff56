"""Tenants, their domains, people and plans. All of these live in the public schema."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Lower
from django_tenants.models import DomainMixin, TenantMixin

from tenants.models.plans import BillingInterval
from tenants.slugs import validate_slug


class User(AbstractUser):
    """A person: customer member or staff. Logs in with email."""

    email = models.EmailField("email address", unique=True)

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self) -> str:
        return self.email or self.username


class TenantStatus(models.TextChoices):
    TRIALING = "trialing", "Trialing"
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due"
    SUSPENDED = "suspended", "Suspended"
    CANCELLED = "cancelled", "Cancelled"


class TenantKind(models.TextChoices):
    CUSTOMER = "customer", "Customer"
    PUBLIC = "public", "Public schema"
    TEMPLATE = "template", "Template schema"


class TenantQuerySet(models.QuerySet["Tenant"]):
    def customers(self) -> TenantQuerySet:
        return self.filter(kind=TenantKind.CUSTOMER)


class Tenant(TenantMixin):
    """A customer workspace: one PostgreSQL schema, reached at <slug>.<BASE_DOMAIN>.

    The public schema and the template schema new tenants are cloned from are rows too
    (kind=public/template) because django-tenants needs them to be; `Tenant.objects.customers()`
    leaves them out.
    """

    name = models.CharField(max_length=200)
    slug = models.CharField(max_length=40, unique=True, validators=[validate_slug])
    kind = models.CharField(max_length=10, choices=TenantKind.choices, default=TenantKind.CUSTOMER)
    status = models.CharField(max_length=12, choices=TenantStatus.choices, default=TenantStatus.TRIALING, db_index=True)
    status_changed_at = models.DateTimeField(auto_now_add=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Idempotency of provisioning: the same signup (key) never makes two tenants.
    provisioning_key = models.CharField(max_length=100, unique=True, null=True, blank=True)
    plan = models.ForeignKey("tenants.Plan", null=True, blank=True, on_delete=models.PROTECT, related_name="tenants")
    billing_interval = models.CharField(max_length=10, choices=BillingInterval.choices, default=BillingInterval.MONTHLY)
    trial_ends_at = models.DateTimeField(null=True, blank=True)
    vector_shard = models.ForeignKey(
        "tenants.VectorShard", null=True, blank=True, on_delete=models.PROTECT, related_name="tenants"
    )

    auto_create_schema = True
    auto_drop_schema = True

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=TenantStatus.values), name="tenant_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    def create_schema(self, check_if_exists: bool = False, sync_schema: bool = True, verbosity: int = 1) -> bool:
        """Clone the template without django-tenants' per-tenant overhead (see tenants/migrate_fast.py)."""
        from tenants.migrate_fast import tenant_schema_create

        return tenant_schema_create(self, check_if_exists=check_if_exists, sync_schema=sync_schema, verbosity=verbosity)


class Domain(DomainMixin):
    """Host name routed to a tenant (e.g. acme.localhost)."""

    def __str__(self) -> str:
        return self.domain


class MemberRole(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    BILLING = "billing", "Billing"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    """A user's access to a tenant host, with a role."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=MemberRole.choices, default=MemberRole.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant.slug} ({self.role})"


class ActorType(models.TextChoices):
    CUSTOMER = "customer", "Customer"
    STAFF = "staff", "Staff"
    SYSTEM = "system", "System"


class TenantEvent(models.Model):
    """The tenant's history: every lifecycle transition and staff action, append-only.

    It lives here rather than in `lifecycle` because every layer (status changes here,
    dunning in billing, alerts in metering) records into it, and dependencies point one way.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=40, db_index=True)
    actor_type = models.CharField(max_length=10, choices=ActorType.choices)
    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    note = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="tenantevent_tenant_time")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.tenant.slug} {self.kind}"
