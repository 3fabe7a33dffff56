"""Usage metering: meters, the price book, raw events and their rollups (public schema,
keyed by tenant, so billing and finance never fan out over schemas).

Raw events are an append-only ledger with a unique (tenant, event_id) key: the idempotency
key of an event counts once for as long as the event is kept (see docs/METERING.md). Rollups
are written in the same transaction as the events they summarise, so they always agree.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import RegexValidator
from django.db import models

PROPERTY_NAME = RegexValidator(r"^[a-z][a-z0-9_]{0,39}$", "Use lowercase letters, digits and _ (start with a letter).")


class Aggregation(models.TextChoices):
    COUNT = "count", "Count of events"
    SUM = "sum", "Sum of a property"
    MAX = "max", "Maximum of a property"
    UNIQUE = "unique", "Unique count of a property"
    LATEST = "latest", "Latest value of a property"


class Meter(models.Model):
    """What is counted. Quota-bearing meters name the plan resource they are limited by."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    event_type = models.CharField(max_length=40, validators=[PROPERTY_NAME])
    aggregation = models.CharField(max_length=10, choices=Aggregation.choices)
    property = models.CharField(
        max_length=40,
        blank=True,
        validators=[PROPERTY_NAME],
        help_text="Event property aggregated (not for count). input_tokens, output_tokens, total_tokens, "
        "latency_ms and user are first-class; any other name is read from properties.",
    )
    unit = models.CharField(max_length=20, default="")
    resource = models.CharField(
        max_length=20,
        blank=True,
        help_text="Plan resource (api_calls, ai_tokens, seats, storage_gb) that limits this meter, if any.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(aggregation="count") | ~models.Q(property=""), name="meter_property_needed"
            )
        ]

    def __str__(self) -> str:
        return self.code


class PriceBookEntry(models.Model):
    """Provider cost of a model from `effective_from` on (append-only: a price change is a new
    row; the row in force for an event is the newest one not after the event's timestamp)."""

    model = models.CharField(max_length=100, db_index=True)
    provider = models.CharField(max_length=40, default="openai")
    input_per_million = models.DecimalField(max_digits=14, decimal_places=6, help_text="USD per 1M input tokens")
    output_per_million = models.DecimalField(max_digits=14, decimal_places=6, help_text="USD per 1M output tokens")
    effective_from = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["model", "-effective_from"]
        verbose_name_plural = "price book entries"
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"], name="pricebook_model_from_unique"),
            models.CheckConstraint(
                condition=models.Q(input_per_million__gte=0, output_per_million__gte=0), name="pricebook_nonnegative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from:%Y-%m-%d}"


class UsageEvent(models.Model):
    """One billable action (usually a query). Written only by the ingest service."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    event_id = models.CharField(max_length=200)
    event_type = models.CharField(max_length=40)
    timestamp = models.DateTimeField()
    received_at = models.DateTimeField()
    model = models.CharField(max_length=100, blank=True)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    latency_ms = models.IntegerField(null=True)
    department = models.CharField(max_length=100, blank=True)
    user_ref = models.CharField(max_length=100, blank=True)
    properties = models.JSONField(default=dict)
    cost = models.DecimalField(max_digits=20, decimal_places=10, default=0)
    unpriced = models.BooleanField(default=False, help_text="No price book entry for the model at that time.")
    late = models.BooleanField(default=False, help_text="Arrived after its period was closed for invoicing.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "event_id"], name="usageevent_idempotency")]
        indexes = [
            models.Index(fields=["tenant", "timestamp"], name="usageevent_tenant_time"),
            models.Index(fields=["tenant"], condition=models.Q(unpriced=True), name="usageevent_unpriced"),
            models.Index(fields=["tenant"], condition=models.Q(late=True), name="usageevent_late"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.event_id}"


class UsageSums(models.Model):
    """What the usage rollups add up per row: events, token sums, cost, unpriced and late
    counts and a latency histogram (bucket upper bounds in metering.latency.BOUNDS_MS)."""

    events = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=24, decimal_places=10, default=0)
    unpriced_events = models.BigIntegerField(default=0)
    late_events = models.BigIntegerField(default=0)
    latency_hist = ArrayField(models.BigIntegerField(), default=list)

    class Meta:
        abstract = True


class UsageHourly(UsageSums):
    """Usage per tenant, hour, type, model and department."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    hour = models.DateTimeField()
    event_type = models.CharField(max_length=40)
    model = models.CharField(max_length=100, blank=True)
    department = models.CharField(max_length=100, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "hour", "event_type", "model", "department"], name="usagehourly_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.hour:%Y-%m-%d %H}h {self.model}"


class UsageDaily(UsageSums):
    """Events per tenant, day (UTC), type and model: the hourly rollup summed over the day and
    the departments, latency histogram included. Written by the ledger in the same
    transaction as the hourly rows (a batch adds a few rows here: one per model and day), so
    daily series — the usage CSV, charts in total or by model, p95 latency per day — read
    30 rows a month per model instead of hundreds of hourly rows with their histograms."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    day = models.DateField()
    event_type = models.CharField(max_length=40)
    model = models.CharField(max_length=100, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "day", "event_type", "model"], name="usagedaily_key")]
        indexes = [
            # Billing's look-up of periods with late usage (billing/invoicing.py _late_adjustments).
            models.Index(fields=["tenant", "day"], condition=models.Q(late_events__gt=0), name="usagedaily_late")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day} {self.model}"


class UsageUserDaily(models.Model):
    """Events, tokens and cost per tenant, day and user: breakdowns by user, active users."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    day = models.DateField()
    user_ref = models.CharField(max_length=100)
    events = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=24, decimal_places=10, default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "day", "user_ref"], name="usageuserdaily_key")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day} {self.user_ref}"


class MeterHourly(models.Model):
    """Each meter's value per tenant and hour (sum/count added up, max kept, latest by time)."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    hour = models.DateTimeField()
    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="+")
    value = models.DecimalField(max_digits=24, decimal_places=6, default=0)
    last_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "hour", "meter"], name="meterhourly_key")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.hour:%Y-%m-%d %H}h meter {self.meter_id}"


class MeterUniqueDaily(models.Model):
    """Distinct values seen per tenant, day and unique-count meter."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    day = models.DateField()
    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="+")
    value = models.CharField(max_length=200)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "day", "meter", "value"], name="meteruniquedaily_key")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day} meter {self.meter_id}"


class UsageCursor(models.Model):
    """Usage before `closed_through` has been invoiced; later-arriving events for it are
    flagged late (kept, billed as an adjustment). Billing moves the cursor."""

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    closed_through = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.tenant_id} closed through {self.closed_through:%Y-%m-%d}"


class UsageAlert(models.Model):
    """A tenant crossed 80% or 100% of an included quantity: once per period and meter."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="usage_alerts")
    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="+")
    period_start = models.DateTimeField()
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the included quantity: 80 or 100.")
    used = models.DecimalField(max_digits=24, decimal_places=6)
    included = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    emailed_to = models.EmailField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "meter", "period_start", "threshold"], name="usagealert_once")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.meter_id} {self.threshold}%"
