"""Plans (tiers) are data staff edit in admin: prices, trial, limits and the product preset."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models


class BillingInterval(models.TextChoices):
    MONTHLY = "monthly", "Monthly"
    YEARLY = "yearly", "Yearly"


class Resource(models.TextChoices):
    API_CALLS = "api_calls", "API calls per month"
    AI_TOKENS = "ai_tokens", "AI tokens per month"
    SEATS = "seats", "Seats (users)"
    STORAGE_GB = "storage_gb", "Storage (GB)"


class LimitAction(models.TextChoices):
    BLOCK = "block", "Hard block at the limit"
    OVERAGE = "overage", "Allow and bill overage"


class PlanQuerySet(models.QuerySet["Plan"]):
    def available(self) -> PlanQuerySet:
        """Plans a new customer may choose: not retired (retired plans keep their tenants)."""
        return self.filter(retired_at__isnull=True)

    def public(self) -> PlanQuerySet:
        return self.available().filter(is_public=True)


class Plan(models.Model):
    """A tier. Money in integer minor units of `currency` (cents for USD).

    Retiring a plan (`retired_at`) hides it from new customers; tenants already on it keep it
    with its prices and limits (grandfathering) until they change plan.
    """

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=300, blank=True)
    currency = models.CharField(max_length=3, default="usd")
    price_monthly = models.PositiveBigIntegerField(help_text="Minor units per month (e.g. cents).")
    price_yearly = models.PositiveBigIntegerField(
        help_text="Minor units per year; usually carries a discount against 12 × monthly."
    )
    trial_days = models.PositiveIntegerField(default=14)
    is_public = models.BooleanField(default=True, help_text="Shown on the pricing page and in signup.")
    is_custom = models.BooleanField(default=False, help_text="Negotiated per customer (sales-led).")
    sort_order = models.PositiveIntegerField(default=0)
    config_preset = models.JSONField(
        default=dict,
        help_text="Product configuration for tenants on this plan: model, max_tokens, retrieval_top_k, "
        "prompt_template, rate_limit_rps, rate_limit_burst.",
    )
    retired_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = PlanQuerySet.as_manager()

    class Meta:
        ordering = ["sort_order", "price_monthly"]

    def __str__(self) -> str:
        return self.name + (" (retired)" if self.retired_at else "")

    @property
    def yearly_discount_percent(self) -> int:
        full = self.price_monthly * 12
        return round(100 * (full - self.price_yearly) / full) if full else 0

    def monthly_equivalent(self, interval: str) -> Decimal:
        """Monthly revenue in minor units for the interval (yearly normalised to /12)."""
        if interval == BillingInterval.YEARLY:
            return Decimal(self.price_yearly) / 12
        return Decimal(self.price_monthly)


class PlanLimit(models.Model):
    """What a plan includes of one resource, and what happens past it.

    `included` null means unlimited. With `on_exceed=overage`, each started package of
    `overage_package_size` units past `included` costs `overage_package_price` (in major
    units of the plan's currency, e.g. 0.50 per 1,000 API calls).
    """

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="limits")
    resource = models.CharField(max_length=20, choices=Resource.choices)
    included = models.PositiveBigIntegerField(null=True, blank=True, help_text="Empty = unlimited.")
    on_exceed = models.CharField(max_length=10, choices=LimitAction.choices, default=LimitAction.BLOCK)
    overage_package_size = models.PositiveBigIntegerField(default=1, validators=[MinValueValidator(1)])
    overage_package_price = models.DecimalField(
        max_digits=12, decimal_places=4, default=Decimal("0"), validators=[MinValueValidator(Decimal("0"))]
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["plan", "resource"], name="planlimit_unique"),
            models.CheckConstraint(condition=models.Q(overage_package_size__gte=1), name="planlimit_package_positive"),
        ]
        ordering = ["plan", "resource"]

    def __str__(self) -> str:
        if self.included is None:
            return f"{self.get_resource_display()}: unlimited"
        text = f"{self.get_resource_display()}: {self.included:,}"
        if self.on_exceed == LimitAction.OVERAGE:
            text += f", then {self.overage_package_price} per {self.overage_package_size:,}"
        return text
