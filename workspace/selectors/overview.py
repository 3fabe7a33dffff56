"""The overview's reads: this billing period's usage against the plan, the projected bill,
and what needs the customer's attention. Every read takes its tenant explicitly."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from billing.models import BillingProfile, Invoice, InvoiceStatus, Subscription
from billing.rating import RESOURCE_METER, from_minor, plan_fee_line, tax_line, usage_line
from metering.models import Aggregation, Meter, UsageAlert
from metering.periods import period_bounds, quota_period
from metering.selectors import meter_total
from tenants.models import LimitAction, PlanLimit, Resource, Tenant, TenantStatus
from workspace.models import DepartmentBudgetAlert
from workspace.selectors.members import SeatsSummary, seats_summary

WARN_PERCENT = 80
TRIAL_WARNING = timedelta(days=7)
# A projection from a few hours of usage swings wildly; below a day of data it extrapolates
# from one day (a conservative estimate early in the period).
MIN_ELAPSED = timedelta(days=1)


@dataclass
class MeterUsage:
    code: str
    name: str
    resource: str
    used: Decimal
    included: int | None
    on_exceed: str
    percent: float | None  # of the included quantity; None when unlimited

    @property
    def state(self) -> str:
        """ok, warn (80% and over), full (100% and over) or unlimited: the progress bar's look."""
        if self.percent is None:
            return "unlimited"
        return "full" if self.percent >= 100 else "warn" if self.percent >= WARN_PERCENT else "ok"

    @property
    def bar_percent(self) -> float:
        return min(100.0, self.percent or 0.0)

    @property
    def is_whole(self) -> bool:
        return self.used == self.used.to_integral_value()


@dataclass
class BillLine:
    label: str
    amount: int  # minor units


@dataclass
class BillProjection:
    currency: str
    billable: bool  # False while the whole period is in the trial
    billable_from: datetime | None
    fee: int
    overage_so_far: int
    overage_projected: int
    tax_projected: int
    lines: list[BillLine] = field(default_factory=list)

    @property
    def total_so_far(self) -> int:
        return self.fee + self.overage_so_far

    @property
    def total_projected(self) -> int:
        return self.fee + self.overage_projected + self.tax_projected


@dataclass
class Alert:
    level: str  # bad, warn, info
    title: str
    text: str = ""
    link: str = ""
    link_text: str = ""


@dataclass
class PeriodSummary:
    start: datetime
    end: datetime
    days_left: int
    trial_days_left: int | None
    meters: list[MeterUsage]
    seats: SeatsSummary
    bill: BillProjection | None
    alerts: list[Alert]


def _days_until(moment: datetime, now: datetime) -> int:
    return max(0, math.ceil((moment - now).total_seconds() / 86400))


def open_subscription(*, tenant: Tenant) -> Subscription | None:
    return (
        Subscription.objects.filter(tenant=tenant, ended_at__isnull=True)
        .select_related("plan", "period_fee_plan")
        .first()
    )


def current_period(*, tenant: Tenant, subscription: Subscription | None, now: datetime) -> tuple[datetime, datetime]:
    """The billing period holding `now` (the same months as the usage quotas)."""
    if subscription is not None:
        return period_bounds(anchor=subscription.anchor_day, at=now)
    return quota_period(tenant=tenant, at=now)


def meter_usages(*, tenant: Tenant, start: datetime, end: datetime) -> list[MeterUsage]:
    """Each limited meter of the tenant's plan: used this period against the included quantity."""
    if tenant.plan_id is None:
        return []
    limits = {lim.resource: lim for lim in PlanLimit.objects.filter(plan_id=tenant.plan_id)}
    out = []
    for meter in Meter.objects.filter(is_active=True).exclude(resource="").order_by("code"):
        limit = limits.get(meter.resource)
        if limit is None:
            continue
        used = meter_total(tenant_id=tenant.pk, meter_code=meter.code, start=start, end=end)
        percent = None if limit.included is None else (float(used) * 100 / limit.included if limit.included else 100.0)
        out.append(
            MeterUsage(
                code=meter.code,
                name=Resource(meter.resource).label if meter.resource in Resource.values else meter.name,
                resource=meter.resource,
                used=used,
                included=limit.included,
                on_exceed=limit.on_exceed,
                percent=percent,
            )
        )
    order = {r: i for i, r in enumerate(RESOURCE_METER)}
    return sorted(out, key=lambda m: order.get(m.resource, 99))


def bill_projection(
    *,
    tenant: Tenant,
    subscription: Subscription,
    start: datetime,
    end: datetime,
    now: datetime,
    period_used: dict[str, Decimal] | None = None,
) -> BillProjection:
    """What this period's invoice will say, rated with billing's own line functions: the plan
    fee (prorated when only part of the period is billable), overage on the usage so far, and
    overage on a linear projection of that usage to the period's end (storage, a level, is
    projected as it stands). Before discounts and credits. `period_used` ({meter: used over
    [start, end)}, from meter_usages) saves reading the same totals twice."""
    sub = subscription
    plan = sub.period_fee_plan or sub.plan
    currency = sub.plan.currency
    billable_start = max(start, sub.billing_starts_at)
    billable_end = min(end, sub.ended_at or end, sub.cancel_at or end)
    if billable_end <= billable_start:
        return BillProjection(currency, False, sub.billing_starts_at, 0, 0, 0, 0)
    first_start, _ = period_bounds(anchor=sub.anchor_day, at=sub.billing_starts_at)
    months = (start.year - first_start.year) * 12 + (start.month - first_start.month)
    fee_line = plan_fee_line(
        plan=plan,
        interval=sub.interval,
        period_start=start,
        period_end=end,
        billable_start=billable_start,
        billable_end=billable_end,
        year_starts=months % 12 == 0,
    )
    fee = fee_line.amount if fee_line else 0
    lines = [BillLine(fee_line.description, fee)] if fee_line else []
    so_far = projected = 0
    span = billable_end - billable_start
    elapsed = min(span, max(MIN_ELAPSED, now - billable_start))
    aggregations = dict(Meter.objects.values_list("code", "aggregation"))
    for limit in PlanLimit.objects.filter(plan=sub.plan).exclude(resource=Resource.SEATS).order_by("resource"):
        meter = RESOURCE_METER.get(limit.resource)
        if meter is None:
            continue
        if billable_start >= now:
            used = Decimal(0)
        elif period_used is not None and meter in period_used and billable_start == start:
            used = period_used[meter]  # the billable part is the whole period so far
        else:
            used = meter_total(tenant_id=tenant.pk, meter_code=meter, start=billable_start, end=min(now, billable_end))
        if aggregations.get(meter) in (Aggregation.LATEST, Aggregation.MAX, Aggregation.UNIQUE):
            expected = used
        else:
            expected = (used * Decimal(span.total_seconds()) / Decimal(elapsed.total_seconds())).quantize(Decimal(1))
        common = {"limit": limit, "currency": currency, "period_start": billable_start, "period_end": billable_end}
        now_line = usage_line(used=used, tenant_slug=tenant.slug, **common)  # type: ignore[arg-type]
        end_line = usage_line(used=expected, tenant_slug=tenant.slug, **common)  # type: ignore[arg-type]
        so_far += now_line.amount
        projected += end_line.amount
        if limit.on_exceed == LimitAction.OVERAGE and end_line.amount:
            lines.append(BillLine(f"Projected: {end_line.description}", end_line.amount))
    rate = BillingProfile.objects.filter(tenant=tenant).values_list("tax_rate", flat=True).first() or Decimal(0)
    tax = tax_line(taxable=fee + projected, rate=rate)
    if tax is not None:
        lines.append(BillLine(tax.description, tax.amount))
    return BillProjection(
        currency=currency,
        billable=True,
        billable_from=billable_start if billable_start > start else None,
        fee=fee,
        overage_so_far=so_far,
        overage_projected=projected,
        tax_projected=tax.amount if tax else 0,
        lines=lines,
    )


def period_alerts(
    *, tenant: Tenant, start: datetime, now: datetime, meters: list[MeterUsage], show_money: bool
) -> list[Alert]:
    """Quota alerts of this period, failed payments, a trial about to end, budgets crossed."""
    alerts: list[Alert] = []
    by_code = {m.code: m for m in meters}
    seen: set[str] = set()
    raised = UsageAlert.objects.filter(tenant=tenant, period_start=start).select_related("meter")
    for alert in raised.order_by("-threshold", "meter__code"):
        if alert.meter.code in seen:
            continue  # the 100% alert says it all
        seen.add(alert.meter.code)
        meter = by_code.get(alert.meter.code)
        name = meter.name if meter else alert.meter.name
        if alert.threshold >= 100:
            blocked = meter is not None and meter.on_exceed == LimitAction.BLOCK
            alerts.append(
                Alert(
                    "bad",
                    f"Quota reached: {name}",
                    f"All {alert.included:,} included this period are used. "
                    + (
                        "Further requests are refused until the period resets."
                        if blocked
                        else "Further use is billed as overage."
                    ),
                )
            )
        else:
            alerts.append(
                Alert("warn", f"{alert.threshold}% of {name} used", f"{alert.included:,} are included this period.")
            )
    failed = Invoice.objects.filter(tenant=tenant, status=InvoiceStatus.PAYMENT_FAILED).order_by("-period_start")
    for invoice in failed[:3]:
        total = from_minor(invoice.total, invoice.currency)
        alerts.append(
            Alert(
                "bad",
                f"Payment failed for invoice {invoice.number or ''}".strip(),
                f"{total:,.2f} {invoice.currency.upper()} could not be collected"
                + (f": {invoice.last_payment_error}" if invoice.last_payment_error else ".")
                + " Please check your payment method.",
                link=f"/billing/invoices/{invoice.pk}/" if show_money else "",
                link_text="See the invoice",
            )
        )
    if tenant.status == TenantStatus.TRIALING and tenant.trial_ends_at and tenant.trial_ends_at > now:
        left = tenant.trial_ends_at - now
        if left <= TRIAL_WARNING:
            days = _days_until(tenant.trial_ends_at, now)
            alerts.append(
                Alert(
                    "warn",
                    f"Your trial ends in {days} day{'s' if days != 1 else ''}",
                    f"On {tenant.trial_ends_at:%Y-%m-%d}; billing starts then.",
                    link="/billing/" if show_money else "",
                    link_text="Billing",
                )
            )
    for budget in DepartmentBudgetAlert.objects.filter(period_start=start).select_related("department"):
        alerts.append(
            Alert(
                "warn",
                f"{budget.department.name} is over its budget",
                f"${budget.cost_usd:,.2f} spent against a monthly budget of ${budget.budget_usd:,.2f}.",
                link="/departments/",
                link_text="Departments",
            )
        )
    return alerts


def period_summary(*, tenant: Tenant, now: datetime, show_money: bool) -> PeriodSummary:
    subscription = open_subscription(tenant=tenant)
    start, end = current_period(tenant=tenant, subscription=subscription, now=now)
    meters = meter_usages(tenant=tenant, start=start, end=end)
    trial_left = None
    if tenant.status == TenantStatus.TRIALING and tenant.trial_ends_at and tenant.trial_ends_at > now:
        trial_left = _days_until(tenant.trial_ends_at, now)
    bill = None
    if subscription is not None and show_money:
        used = {m.code: m.used for m in meters}
        bill = bill_projection(
            tenant=tenant, subscription=subscription, start=start, end=end, now=now, period_used=used
        )
    return PeriodSummary(
        start=start,
        end=end,
        days_left=_days_until(end, now),
        trial_days_left=trial_left,
        meters=meters,
        seats=seats_summary(tenant=tenant, now=now),
        bill=bill,
        alerts=period_alerts(tenant=tenant, start=start, now=now, meters=meters, show_money=show_money),
    )
