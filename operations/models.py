"""Operations records (public schema): provider bills and cost reconciliation, readiness
audits, business-metrics snapshots and the alert thresholds staff edit in admin.

Money here is provider cost in USD (`Decimal`, as metering stores it) except the revenue
figures of snapshots, which are integer minor units like plans and invoices.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class Provider(models.TextChoices):
    OPENAI = "openai", "OpenAI (usage/cost export)"
    AWS = "aws", "AWS (Cost and Usage Report)"


class Trigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    ADMIN = "admin", "Admin (run now)"
    COMMAND = "command", "Command"


class ProviderBill(models.Model):
    """One imported bill file. The file's SHA-256 is unique: the same file imports once."""

    provider = models.CharField(max_length=10, choices=Provider.choices)
    file_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64, unique=True)
    imported_at = models.DateTimeField(auto_now_add=True)
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rows = models.PositiveIntegerField(help_text="Data rows in the file.")
    lines_added = models.PositiveIntegerField()
    lines_skipped = models.PositiveIntegerField(help_text="Rows already imported from an earlier file (natural key).")
    total_cost = models.DecimalField(max_digits=24, decimal_places=10, help_text="USD, lines added.")
    first_day = models.DateField(null=True, blank=True)
    last_day = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["-imported_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_provider_display()}: {self.file_name}"


class BillLine(models.Model):
    """A bill row as imported: what was used (a model or an AWS service) on a day, at what cost.
    `natural_key` is unique per provider, so an overlapping export never counts a row twice."""

    bill = models.ForeignKey(ProviderBill, on_delete=models.CASCADE, related_name="lines")
    provider = models.CharField(max_length=10, choices=Provider.choices)
    natural_key = models.CharField(max_length=64)
    row_number = models.PositiveIntegerField()
    day = models.DateField()
    month = models.DateField(help_text="First day of the usage month (UTC).")
    item = models.CharField(max_length=200, help_text="Model (OpenAI) or service (AWS) as the bill names it.")
    usage_quantity = models.DecimalField(max_digits=28, decimal_places=6, default=Decimal(0))
    usage_unit = models.CharField(max_length=60, blank=True)
    cost = models.DecimalField(max_digits=24, decimal_places=10)
    shared_infrastructure = models.BooleanField(
        default=False, help_text="AWS cost that is not a model service: allocated to tenants, not reconciled."
    )

    class Meta:
        ordering = ["bill", "row_number"]
        constraints = [models.UniqueConstraint(fields=["provider", "natural_key"], name="billline_natural_key")]
        indexes = [models.Index(fields=["month", "provider"], name="billline_month_provider")]

    def __str__(self) -> str:
        return f"{self.provider} {self.day} {self.item}: {self.cost}"


class ReconciliationStatus(models.TextChoices):
    PASSED = "passed", "Within tolerance"
    FLAGGED = "flagged", "Outside tolerance"
    NOT_APPLICABLE = "n/a", "No model cost to compare (infrastructure only)"


class ReconciliationRun(models.Model):
    """Tracked cost (metering) against imported bills for one calendar month, as of one run."""

    month = models.DateField(db_index=True)
    status = models.CharField(max_length=10, choices=ReconciliationStatus.choices)
    tolerance = models.DecimalField(max_digits=6, decimal_places=4, default=Decimal("0.05"))
    tracked_cost = models.DecimalField(max_digits=24, decimal_places=6)
    actual_cost = models.DecimalField(max_digits=24, decimal_places=6, help_text="Model cost on the bills.")
    variance = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True, help_text="(actual − tracked) / actual"
    )
    infrastructure_cost = models.DecimalField(max_digits=24, decimal_places=6, default=Decimal(0))
    unattributed_cost = models.DecimalField(
        max_digits=24, decimal_places=6, default=Decimal(0),
        help_text="Billed cost no tenant's usage explains (a model or month with no tracked usage).",
    )  # fmt: skip
    allocation_basis = models.CharField(max_length=20, default="api_calls")
    providers = models.JSONField(default=list, help_text="Providers reconciled (those with a bill this month).")
    contributors = models.JSONField(default=dict, blank=True)
    inputs_fingerprint = models.CharField(max_length=64)
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-month", "-created_at", "-id"]

    def __str__(self) -> str:
        return f"reconciliation {self.month:%Y-%m} #{self.pk}"


class ReconciliationItem(models.Model):
    """One line of a run: a provider's total (item "") or one model / AWS service."""

    class Kind(models.TextChoices):
        PROVIDER = "provider", "Provider total"
        MODEL = "model", "Model / model service"
        INFRASTRUCTURE = "infra", "Shared infrastructure (allocated)"

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="items")
    provider = models.CharField(max_length=10, choices=Provider.choices)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    item = models.CharField(max_length=200, blank=True)
    tracked_cost = models.DecimalField(max_digits=24, decimal_places=6, null=True, blank=True)
    actual_cost = models.DecimalField(max_digits=24, decimal_places=6)
    variance = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    flagged = models.BooleanField(default=False)

    class Meta:
        ordering = ["run", "provider", "kind", "item"]

    def __str__(self) -> str:
        return f"{self.provider} {self.item or '(total)'}"


class TenantReconciliation(models.Model):
    """One tenant's share of a run. `actual_cost` is the bills' model cost allocated by the
    tenant's share of each model's tracked tokens; `infrastructure_cost` the shared AWS cost
    allocated by its share of API calls."""

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="tenants")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    tenant_slug = models.CharField(max_length=40)
    api_calls = models.BigIntegerField(default=0)
    tokens = models.BigIntegerField(default=0)
    usage_share = models.DecimalField(max_digits=12, decimal_places=10, default=Decimal(0))
    tracked_cost = models.DecimalField(max_digits=24, decimal_places=6)
    actual_cost = models.DecimalField(max_digits=24, decimal_places=6)
    variance = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    infrastructure_cost = models.DecimalField(max_digits=24, decimal_places=6, default=Decimal(0))
    flagged = models.BooleanField(default=False)

    class Meta:
        ordering = ["run", "tenant_id"]
        constraints = [models.UniqueConstraint(fields=["run", "tenant"], name="tenantreconciliation_once")]

    def __str__(self) -> str:
        return f"{self.tenant_slug} in {self.run_id}"


class CheckStatus(models.TextChoices):
    PASS = "pass", "Pass"
    FAIL = "fail", "Fail"
    SKIPPED = "skipped", "Skipped"


class ReadinessRun(models.Model):
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=CheckStatus.choices, help_text="fail if any check failed.")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    alerted_to = models.TextField(blank=True, help_text="Who was emailed about failing checks.")

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"readiness audit {self.started_at:%Y-%m-%d %H:%M} ({self.status})"


class ReadinessResult(models.Model):
    run = models.ForeignKey(ReadinessRun, on_delete=models.CASCADE, related_name="results")
    check_code = models.CharField(max_length=40)
    status = models.CharField(max_length=10, choices=CheckStatus.choices)
    value = models.CharField(max_length=300, blank=True, help_text="What was measured.")
    message = models.TextField(blank=True, help_text="Why it passed, failed or was skipped.")
    evidence = models.JSONField(default=dict, blank=True)
    seconds = models.FloatField(default=0)

    class Meta:
        ordering = ["run", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "check_code"], name="readinessresult_once")]

    def __str__(self) -> str:
        return f"{self.check_code}: {self.status}"


class AlertThresholds(models.Model):
    """Monitoring thresholds (one row). Staff edit them in admin; the readiness audit and the
    alert job read them on every run, so a change needs no deploy. Empty = not checked."""

    error_rate_max = models.DecimalField(
        max_digits=6, decimal_places=4, null=True, blank=True, default=Decimal("0.02"),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(1))],
        help_text="Most 5xx responses as a fraction of all requests in the window (0.02 = 2%).",
    )  # fmt: skip
    latency_p95_max_ms = models.PositiveIntegerField(
        null=True, blank=True, default=1000, help_text="Most p95 request latency in the window, milliseconds."
    )
    queue_backlog_max = models.PositiveIntegerField(
        null=True, blank=True, default=100, help_text="Most Celery messages waiting in the broker queue."
    )
    failed_payments_max = models.PositiveIntegerField(
        null=True, blank=True, default=5, help_text="Most invoices in payment_failed at once."
    )
    window_minutes = models.PositiveIntegerField(
        default=15, validators=[MinValueValidator(1), MaxValueValidator(180)], help_text="Window for rates (minutes)."
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = "alert thresholds"
        verbose_name_plural = "alert thresholds"

    def __str__(self) -> str:
        return "alert thresholds"

    @classmethod
    def current(cls) -> AlertThresholds:
        row, _ = cls.objects.get_or_create(pk=1)
        return row


class MetricsSnapshot(models.Model):
    """Business metrics as of the end of `day` (UTC). Revenue figures in minor units of
    `currency`; movements and rates are month to date (docs/METRICS.md)."""

    day = models.DateField(unique=True)
    currency = models.CharField(max_length=3, default="usd")
    mrr = models.BigIntegerField()
    arr = models.BigIntegerField()
    paying_tenants = models.PositiveIntegerField()
    active_tenants = models.PositiveIntegerField()
    arpu = models.BigIntegerField(null=True, blank=True)
    new_mrr = models.BigIntegerField(default=0)
    reactivation_mrr = models.BigIntegerField(default=0)
    expansion_mrr = models.BigIntegerField(default=0)
    contraction_mrr = models.BigIntegerField(default=0)
    churned_mrr = models.BigIntegerField(default=0)
    logo_churn_rate = models.DecimalField(max_digits=10, decimal_places=6, null=True, blank=True)
    revenue_churn_rate = models.DecimalField(max_digits=10, decimal_places=6, null=True, blank=True)
    net_revenue_churn_rate = models.DecimalField(max_digits=10, decimal_places=6, null=True, blank=True)
    trials_ended = models.PositiveIntegerField(default=0)
    trials_converted = models.PositiveIntegerField(default=0)
    trial_conversion_rate = models.DecimalField(max_digits=10, decimal_places=6, null=True, blank=True)
    by_plan = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"metrics {self.day}"
