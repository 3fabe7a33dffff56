"""Billing: subscriptions, invoices (ours are the source of truth), payments through Stripe,
webhook events, dunning. Public schema, keyed by tenant.

Money: integer minor units with a currency on invoices and lines; Decimal for unit prices.
Time: aware UTC; periods half-open [start, end).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class BillingProfile(models.Model):
    """Who pays for a tenant and how: billing email, tax, Stripe customer and card."""

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, related_name="billing_profile")
    billing_email = models.EmailField(blank=True)
    tax_rate = models.DecimalField(
        max_digits=6,
        decimal_places=4,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="Fraction, e.g. 0.2000 for 20% VAT. Shown as its own invoice line.",
    )
    auto_approve = models.BooleanField(default=False, help_text="Drafts skip finance review and finalize at once.")
    stripe_customer_id = models.CharField(max_length=100, blank=True, db_index=True)
    payment_method_id = models.CharField(max_length=100, blank=True)
    payment_method_label = models.CharField(max_length=100, blank=True, help_text="e.g. Visa •••• 4242")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"billing of {self.tenant_id}"

    @property
    def has_payment_method(self) -> bool:
        return bool(self.payment_method_id)


class SubscriptionStatus(models.TextChoices):
    TRIALING = "trialing", "Trialing"
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due"
    CANCELLED = "cancelled", "Cancelled"


class Subscription(models.Model):
    """A tenant on a plan. Periods follow the tenant's quota periods (monthly, anchored on a
    day of month); a yearly interval bills its fee once a year (see docs/BILLING.md)."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="subscriptions")
    plan = models.ForeignKey("tenants.Plan", on_delete=models.PROTECT, related_name="subscriptions")
    interval = models.CharField(max_length=10, default="monthly")
    status = models.CharField(max_length=10, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE)
    started_at = models.DateTimeField()
    anchor_day = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(28)])
    # Billing begins here (trial end, or start when there is no trial).
    billing_starts_at = models.DateTimeField()
    # Periods before this are invoiced (the job's cursor; moves only forward).
    invoiced_through = models.DateTimeField()
    cancel_at = models.DateTimeField(null=True, blank=True, help_text="Ends at this time (period end).")
    ended_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=500, blank=True)
    pending_plan = models.ForeignKey(
        "tenants.Plan", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Downgrade that takes effect at the next period start.",
    )  # fmt: skip
    pending_interval = models.CharField(max_length=10, blank=True)
    period_fee_plan = models.ForeignKey(
        "tenants.Plan", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="After a mid-period upgrade: the plan whose fee this period's invoice charges (the "
        "difference was invoiced at the upgrade).",
    )  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant"], condition=models.Q(ended_at__isnull=True), name="subscription_one_open_per_tenant"
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} on {self.plan_id} ({self.interval})"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft (finance review)"
    FINALIZED = "finalized", "Finalized (open)"
    PAID = "paid", "Paid"
    PAYMENT_FAILED = "payment_failed", "Payment failed"
    VOID = "void", "Void"


class InvoiceKind(models.TextChoices):
    PERIOD = "period", "Billing period"
    # At a trial's conversion: the plan fee of the first (prorated) period, billed when the
    # trial ends; that period's own invoice then holds its usage only (docs/BILLING.md).
    ADVANCE = "advance", "First period's fee (in advance)"
    PRORATION = "proration", "Plan change (prorated)"
    FINAL = "final", "Final (cancellation)"


class Invoice(models.Model):
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="invoices")
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.PROTECT, related_name="invoices"
    )
    kind = models.CharField(max_length=10, choices=InvoiceKind.choices, default=InvoiceKind.PERIOD)
    number = models.CharField(max_length=30, null=True, blank=True, unique=True, help_text="Given at finalization.")
    status = models.CharField(max_length=15, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT, db_index=True)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    currency = models.CharField(max_length=3)
    subtotal = models.BigIntegerField(default=0)
    tax = models.BigIntegerField(default=0)
    total = models.BigIntegerField(default=0)
    previous_total = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="What the tenant's previous period was invoiced (with a fee billed in advance).",
    )
    swing_flag = models.BooleanField(default=False, help_text="Total moved a lot against the previous period.")
    created_at = models.DateTimeField(auto_now_add=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    finalized_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    due_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=500, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    payment_intent_id = models.CharField(max_length=100, blank=True, db_index=True)
    payment_attempts = models.PositiveSmallIntegerField(default=0)
    next_payment_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_payment_error = models.CharField(max_length=500, blank=True)
    disputed = models.BooleanField(default=False)
    dispute_note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-period_start", "-id"]
        constraints = [
            # The invoice job's idempotency: one invoice per tenant, period and kind.
            models.UniqueConstraint(
                fields=["tenant", "kind", "period_start", "period_end"],
                condition=~models.Q(status="void"),
                name="invoice_one_per_tenant_period",
            )
        ]

    def __str__(self) -> str:
        return self.number or f"draft #{self.pk}"

    @property
    def is_mutable(self) -> bool:
        return self.status == InvoiceStatus.DRAFT


class LineKind(models.TextChoices):
    BASE = "base", "Plan fee"
    USAGE = "usage", "Usage"
    ADJUSTMENT = "adjustment", "Late usage adjustment"
    CREDIT = "credit", "Credit"
    DISCOUNT = "discount", "Discount"
    TAX = "tax", "Tax"


class InvoiceLine(models.Model):
    """One line: what it is in words, the quantity and unit price it came from, the amount.
    `details` keeps the arithmetic (included, used, overage, packages) and `usage_query` the
    usage API query that reproduces the quantity."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=12, choices=LineKind.choices)
    description = models.CharField(max_length=300)
    meter = models.CharField(max_length=40, blank=True)
    quantity = models.DecimalField(max_digits=24, decimal_places=6, default=Decimal("1"))
    unit_price = models.DecimalField(max_digits=20, decimal_places=6, default=Decimal("0"), help_text="Major units.")
    amount = models.BigIntegerField(help_text="Minor units, rounded half-up once per line.")
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    usage_query = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [models.UniqueConstraint(fields=["invoice", "position"], name="invoiceline_position_unique")]

    def __str__(self) -> str:
        return f"{self.description}: {self.amount}"


class InvoiceSequence(models.Model):
    """Gap-free numbering per series: the next number is taken under a row lock in the same
    transaction that finalizes the invoice, so a rollback gives the number back."""

    series = models.CharField(max_length=10, unique=True)
    next_number = models.PositiveBigIntegerField(default=1)

    def __str__(self) -> str:
        return f"{self.series}: next {self.next_number}"


class CreditNote(models.Model):
    """A correction to a finalized invoice (which itself never changes). Its amount is owed
    to the customer and deducted from later invoices — all at once or in parts
    (CreditApplication), as much as each invoice's subtotal allows."""

    number = models.CharField(max_length=30, unique=True)
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    amount = models.BigIntegerField(help_text="Minor units credited (positive).")
    reason = models.CharField(max_length=500)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=models.Q(amount__gt=0), name="creditnote_positive")]

    def __str__(self) -> str:
        return self.number

    @property
    def applied(self) -> int:
        return sum(a.amount for a in self.applications.all())

    @property
    def remaining(self) -> int:
        return self.amount - self.applied


class CreditApplication(models.Model):
    """Part (or all) of a credit note deducted from a later invoice, as its credit line.
    Voiding that invoice deletes the application: the credit is owed again."""

    note = models.ForeignKey(CreditNote, on_delete=models.PROTECT, related_name="applications")
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="credit_applications")
    amount = models.BigIntegerField(help_text="Minor units deducted (positive).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="creditapplication_positive"),
            models.UniqueConstraint(fields=["note", "invoice"], name="creditapplication_once_per_invoice"),
        ]

    def __str__(self) -> str:
        return f"{self.note} → {self.invoice}: {self.amount}"


class Coupon(models.Model):
    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    percent_off = models.DecimalField(
        max_digits=5, decimal_places=2, null=True, blank=True,
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
    )  # fmt: skip
    amount_off = models.BigIntegerField(null=True, blank=True, help_text="Minor units off the plan fee.")
    duration_periods = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Empty: forever.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(percent_off__isnull=False, amount_off__isnull=True)
                | models.Q(percent_off__isnull=True, amount_off__isnull=False),
                name="coupon_one_kind",
            )
        ]

    def __str__(self) -> str:
        return self.code


class Discount(models.Model):
    """A coupon applied to a tenant from a time on, for the coupon's number of periods."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="discounts")
    coupon = models.ForeignKey(Coupon, on_delete=models.PROTECT, related_name="discounts")
    starts_at = models.DateTimeField()
    periods_used = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.coupon_id} for {self.tenant_id}"


class StripeEvent(models.Model):
    """Every webhook event, stored once by Stripe's id before it is handled."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored (type not handled)"
        FAILED = "failed", "Failed"

    event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    created = models.DateTimeField(help_text="Stripe's event time.")
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            # The drain's claim of the backlog (billing/webhooks.py): only unhandled rows.
            models.Index(fields=["id"], condition=models.Q(status="received"), name="stripeevent_received")
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class PaymentAttempt(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="payment_attempt_log")
    payment_intent_id = models.CharField(max_length=100, blank=True)
    amount = models.BigIntegerField()
    succeeded = models.BooleanField(default=False)
    error_code = models.CharField(max_length=100, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.invoice_id} {'ok' if self.succeeded else self.error_code}"


def default_retry_days() -> list[int]:
    return [1, 3, 5, 7]


class DunningPolicy(models.Model):
    """Retry schedule after a failed payment (days after the first failure); staff edit it."""

    retry_days = models.JSONField(default=default_retry_days)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "dunning policy"

    def __str__(self) -> str:
        return "retry after " + ", ".join(f"{d} d" for d in self.retry_days)

    @classmethod
    def current(cls) -> DunningPolicy:
        policy, _ = cls.objects.get_or_create(pk=1)
        return policy
