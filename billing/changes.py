"""Plan changes: the arithmetic (the lifecycle layer decides when to call these).

- Upgrade (a higher monthly-equivalent fee): takes effect at once. A proration invoice is
  drafted now for the rest of the period: (new monthly fee − old monthly fee) × the fraction
  of the period left. The period's own invoice still charges the old plan's fee
  (`period_fee_plan`; or the fee billed in advance at the trial's conversion already did), so
  over the period the customer pays old × used part + new × rest. Usage for the whole period
  is rated with the new plan's (larger) limits. During the trial nothing is charged, and the
  first period's fee is the new plan's.
- Downgrade (lower or equal fee): takes effect at the next period start; until then nothing
  changes. The lifecycle layer refuses it when current usage does not fit the smaller plan.
- Interval switch (monthly ↔ yearly): at the next period start. A yearly fee is then charged
  on that first yearly period.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from billing.models import Invoice, InvoiceKind, InvoiceLine, LineKind, Subscription
from billing.rating import from_minor, to_minor
from metering.periods import period_bounds
from tenants.models import BillingInterval, Plan


def monthly_fee(plan: Plan, interval: str) -> Decimal:
    """The plan's fee per month in major units (yearly normalised to /12)."""
    if interval == BillingInterval.YEARLY:
        return from_minor(plan.price_yearly, plan.currency) / 12
    return from_minor(plan.price_monthly, plan.currency)


def is_upgrade(*, current: Plan, current_interval: str, new: Plan, new_interval: str) -> bool:
    return monthly_fee(new, new_interval) > monthly_fee(current, current_interval)


@transaction.atomic
def subscription_upgrade(*, subscription: Subscription, plan: Plan, at: datetime | None = None) -> Invoice | None:
    """Switch to a dearer plan now; draft the proration invoice (None if nothing is due, e.g.
    during the trial). Atomic; the caller finalizes or reviews the draft as usual."""
    at = at or timezone.now()
    sub = Subscription.objects.select_for_update(of=("self",)).select_related("plan").get(pk=subscription.pk)
    if not is_upgrade(current=sub.plan, current_interval=sub.interval, new=plan, new_interval=sub.interval):
        raise ValidationError(f"{plan.name} is not an upgrade from {sub.plan.name}; downgrades apply at period end.")
    start, end = period_bounds(anchor=sub.anchor_day, at=at)
    old = sub.plan
    in_trial = at < sub.billing_starts_at
    Subscription.objects.filter(pk=sub.pk).update(
        plan=plan,
        # During the trial nothing of this period is billed yet: its billable part (from the
        # trial's end) is all on the new plan, so its fee is the new plan's.
        period_fee_plan=sub.period_fee_plan if in_trial else (sub.period_fee_plan or old),
        pending_plan=None,
    )
    subscription.plan = plan
    if in_trial:
        return None
    fraction = (Decimal((end - at).total_seconds()) / Decimal((end - start).total_seconds())).quantize(
        Decimal("0.000001")
    )
    difference = monthly_fee(plan, sub.interval) - monthly_fee(old, sub.interval)
    amount = to_minor(difference * fraction, plan.currency)
    if amount <= 0:
        return None
    invoice = Invoice.objects.create(
        tenant_id=sub.tenant_id,
        subscription=sub,
        kind=InvoiceKind.PRORATION,
        period_start=at,
        period_end=end,
        currency=plan.currency,
        subtotal=amount,
        total=amount,
    )
    InvoiceLine.objects.create(
        invoice=invoice,
        position=1,
        kind=LineKind.BASE,
        description=(
            f"Upgrade from {old.name} to {plan.name}, {at:%Y-%m-%d} to {end:%Y-%m-%d} "
            f"(prorated: {fraction:.2%} of the month × {difference:.2f} difference)"
        ),
        quantity=fraction,
        unit_price=difference,
        amount=amount,
        period_start=at,
        period_end=end,
        details={"from": old.code, "to": plan.code, "fraction": str(fraction), "difference": str(difference)},
    )
    return invoice


@transaction.atomic
def subscription_schedule_change(
    *, subscription: Subscription, plan: Plan | None = None, interval: str | None = None
) -> Subscription:
    """A downgrade and/or interval switch, effective at the next period start."""
    sub = Subscription.objects.select_for_update(of=("self",)).get(pk=subscription.pk)
    Subscription.objects.filter(pk=sub.pk).update(
        pending_plan=plan if plan and plan.pk != sub.plan_id else None,
        pending_interval=interval if interval and interval != sub.interval else "",
    )
    sub.refresh_from_db()
    return sub


def subscription_apply_pending(*, subscription: Subscription, at: datetime) -> None:
    """Called by the period job after it closed the period ending at `at`."""
    sub = Subscription.objects.select_for_update(of=("self",)).get(pk=subscription.pk)
    changes: dict[str, object] = {"pending_plan": None, "pending_interval": ""}
    if sub.pending_plan_id:
        changes["plan_id"] = sub.pending_plan_id
    if sub.pending_interval:
        changes["interval"] = sub.pending_interval
        # a yearly fee is due on the first period of the new interval
        changes["billing_starts_at"] = max(sub.billing_starts_at, at)
    Subscription.objects.filter(pk=sub.pk).update(**changes)
    from tenants.models import Tenant
    from tenants.services import tenant_event_record, tenant_plan_change

    tenant = Tenant.objects.get(pk=sub.tenant_id)
    if sub.pending_plan_id and tenant.plan_id != sub.pending_plan_id:
        tenant_plan_change(tenant=tenant, plan=Plan.objects.get(pk=sub.pending_plan_id), reason="scheduled change")
    if sub.pending_interval and tenant.billing_interval != sub.pending_interval:
        Tenant.objects.filter(pk=tenant.pk).update(billing_interval=sub.pending_interval)
        tenant_event_record(
            tenant=tenant, kind="interval_changed", details={"from": sub.interval, "to": sub.pending_interval}
        )
