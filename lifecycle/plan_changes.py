"""Plan changes and cancellation, from the workspace (/plan/) and by staff.

- Upgrade (dearer plan): at once — new limits now (tenant_plan_change) and a proration
  invoice for the rest of the period, finalized at once (billing.changes; nothing during a
  trial).
- Downgrade: at the next period start (subscription_schedule_change), refused while current
  usage does not fit the smaller plan: seats (members) and storage (latest storage_gb value).
- Monthly ↔ yearly: at the next period start; the yearly fee is charged on that first
  yearly period (docs/BILLING.md).
- Cancel: at the period's end by default (Subscription.cancel_at), undoable until then;
  "now" ends the subscription at once and invoices the period so far on a FINAL invoice (a
  fee billed in advance for the period gives back its unused part: billing.invoicing.
  advance_fee_settle).
  The reason is kept (Cancellation) for churn analysis. A cancelled tenant's data is kept
  LIFECYCLE_RETENTION_DAYS (lifecycle/retention.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from billing.changes import is_upgrade, subscription_schedule_change, subscription_upgrade
from billing.invoicing import advance_fee_settle, invoice_draft, invoice_finalize, subscription_create
from billing.models import Invoice, InvoiceKind, InvoiceStatus, Subscription, SubscriptionStatus
from lifecycle.models import Cancellation, CancellationReason
from metering.models import Meter
from metering.periods import period_bounds
from metering.selectors import meter_total
from metering.services import usage_cursor_advance
from tenants.models import BillingInterval, Membership, Plan, PlanLimit, Resource, Tenant, TenantStatus, User
from tenants.services import tenant_event_record, tenant_plan_change
from tenants.status import tenant_status_change

S = TenantStatus
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class PlanChangeRefused(ValidationError):
    """The change cannot be made as asked; the message says why and what to do."""


def subscription_open(*, tenant: Tenant) -> Subscription:
    sub = (
        Subscription.objects.select_related("plan", "pending_plan").filter(tenant=tenant, ended_at__isnull=True).first()
    )
    if sub is None:
        raise PlanChangeRefused("This workspace has no open subscription.")
    return sub


def current_period_end(sub: Subscription, at: datetime | None = None) -> datetime:
    return period_bounds(anchor=sub.anchor_day, at=at or timezone.now())[1]


# --- what fits ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Usage:
    seats: int
    storage_gb: float


def usage_now(*, tenant: Tenant) -> Usage:
    seats = Membership.objects.filter(tenant=tenant).count()
    storage = 0.0
    if Meter.objects.filter(code="storage_gb").exists():
        storage = float(
            meter_total(
                tenant_id=tenant.pk, meter_code="storage_gb", start=EPOCH, end=timezone.now() + timedelta(hours=1)
            )
        )
    return Usage(seats=seats, storage_gb=storage)


def plan_misfits(*, tenant: Tenant, plan: Plan) -> list[str]:
    """Why the tenant's current usage does not fit `plan` (empty: it fits)."""
    usage = usage_now(tenant=tenant)
    limits = {limit.resource: limit.included for limit in PlanLimit.objects.filter(plan=plan)}
    problems = []
    seats = limits.get(Resource.SEATS)
    if seats is not None and usage.seats > seats:
        problems.append(
            f"{plan.name} includes {seats} seats and this workspace has {usage.seats} members: "
            f"remove {usage.seats - seats} member{'s' if usage.seats - seats != 1 else ''} first."
        )
    storage = limits.get(Resource.STORAGE_GB)
    if storage is not None and usage.storage_gb > storage:
        problems.append(
            f"{plan.name} includes {storage} GB of storage and this workspace stores {usage.storage_gb:g} GB: "
            f"delete {usage.storage_gb - storage:g} GB first."
        )
    return problems


# --- changes -----------------------------------------------------------------------------------
@dataclass
class PlanChangeResult:
    kind: str  # upgraded | downgraded | interval_scheduled | unchanged
    effective_at: datetime
    invoice: Invoice | None = None
    message: str = ""


def plan_change_blocked(tenant: Tenant) -> str | None:
    """Why the tenant cannot change plan at all just now, or None."""
    if tenant.status in (S.CANCELLED, S.SUSPENDED):
        return f"A {tenant.get_status_display().lower()} workspace cannot change plan."
    return None


def _check_can_change(tenant: Tenant) -> None:
    blocked = plan_change_blocked(tenant)
    if blocked:
        raise PlanChangeRefused(blocked)


def plan_change(
    *, tenant: Tenant, plan: Plan, interval: str | None = None, actor: User | None, reason: str = ""
) -> PlanChangeResult:
    """Move the tenant to `plan` (and/or `interval`): an upgrade now, a downgrade or an
    interval switch at the next period start. Choosing the current plan again withdraws a
    scheduled downgrade. Refusals raise PlanChangeRefused with the reason."""
    tenant = Tenant.objects.select_related("plan").get(pk=tenant.pk)
    _check_can_change(tenant)
    sub = subscription_open(tenant=tenant)
    interval = interval or sub.interval
    if interval not in BillingInterval.values:
        raise PlanChangeRefused("Choose monthly or yearly billing.")
    if plan.retired_at is not None or (plan.pk != sub.plan_id and not plan.is_public and actor and not actor.is_staff):
        raise PlanChangeRefused(f"{plan.name} cannot be chosen; pick a plan from the list.")
    period_end = current_period_end(sub)
    if plan.pk == sub.plan_id:
        if interval == sub.interval and not sub.pending_plan_id and not sub.pending_interval:
            raise PlanChangeRefused(f"The workspace is already on {plan.name}, billed {interval}.")
        with transaction.atomic():
            # An interval switch keeps a scheduled downgrade; choosing the plan as it is withdraws it.
            keep = sub.pending_plan if interval != sub.interval else None
            withdrawn = sub.pending_plan.code if sub.pending_plan is not None and keep is None else None
            subscription_schedule_change(subscription=sub, plan=keep, interval=interval)
            tenant_event_record(
                tenant=tenant,
                kind="plan_change_scheduled",
                actor=actor,
                note=reason,
                details={"plan": plan.code, "interval": interval, "withdrawn_downgrade": withdrawn,
                         "effective_at": period_end.isoformat()},
            )  # fmt: skip
        return PlanChangeResult("interval_scheduled", period_end, message=_interval_message(sub, interval, period_end))
    if is_upgrade(current=sub.plan, current_interval=sub.interval, new=plan, new_interval=sub.interval):
        return _upgrade(tenant=tenant, sub=sub, plan=plan, interval=interval, actor=actor, reason=reason)
    problems = plan_misfits(tenant=tenant, plan=plan)
    if problems:
        raise PlanChangeRefused(["The workspace does not fit the smaller plan yet.", *problems])
    with transaction.atomic():
        subscription_schedule_change(subscription=sub, plan=plan, interval=interval)
        tenant_event_record(
            tenant=tenant,
            kind="downgraded",
            actor=actor,
            note=reason or f"Scheduled: {sub.plan.name} → {plan.name} from {period_end:%Y-%m-%d}.",
            details={
                "from": sub.plan.code,
                "to": plan.code,
                "interval": interval,
                "effective_at": period_end.isoformat(),
            },
        )
    return PlanChangeResult(
        "downgraded",
        period_end,
        message=f"{plan.name} starts on {period_end:%d %B %Y}; until then you keep {sub.plan.name}.",
    )


def _interval_message(sub: Subscription, interval: str, at: datetime) -> str:
    if interval == sub.interval:
        return f"The scheduled change is withdrawn; you stay on {sub.plan.name}, billed {interval}."
    return f"Billing switches to {interval} on {at:%d %B %Y} (the next period start)."


def _upgrade(
    *, tenant: Tenant, sub: Subscription, plan: Plan, interval: str, actor: User | None, reason: str
) -> PlanChangeResult:
    now = timezone.now()
    with transaction.atomic():
        old = sub.plan
        tenant_plan_change(tenant=tenant, plan=plan, actor=actor, reason=reason or "upgrade")
        invoice = subscription_upgrade(subscription=sub, plan=plan, at=now)
        if invoice is not None:
            invoice_finalize(invoice=invoice, actor=None, note="upgrade proration")
        if interval != sub.interval:
            subscription_schedule_change(subscription=sub, plan=None, interval=interval)
        tenant_event_record(
            tenant=tenant,
            kind="upgraded",
            actor=actor,
            note=reason,
            details={"from": old.code, "to": plan.code, "invoice": invoice.number if invoice else None,
                     "total": invoice.total if invoice else 0, "interval": interval},
        )  # fmt: skip
    charged = f" A prorated invoice {invoice.number} was issued." if invoice else " Nothing is charged now."
    return PlanChangeResult("upgraded", now, invoice, message=f"You are on {plan.name} now.{charged}")


# --- cancellation ------------------------------------------------------------------------------
@dataclass
class CancelResult:
    effective_at: datetime
    invoice: Invoice | None = None


def subscription_cancel(
    *, tenant: Tenant, actor: User | None, reason: str, comment: str = "", immediate: bool = False
) -> CancelResult:
    """Cancel the subscription: at the current period's end (default; reactivation possible
    until then), or now — the subscription ends at once, the period so far (prorated fee,
    usage) goes on a FINAL invoice that is finalized, and the tenant becomes cancelled.
    A workspace without an open subscription (paused after a trial without a card) has
    nothing to bill: it is cancelled now either way."""
    if reason not in CancellationReason.values:
        raise PlanChangeRefused("Tell us why you cancel (pick a reason).")
    tenant = Tenant.objects.select_related("plan").get(pk=tenant.pk)
    if tenant.status == S.CANCELLED:
        raise PlanChangeRefused("This workspace is already cancelled.")
    sub = Subscription.objects.filter(tenant=tenant, ended_at__isnull=True).first()
    immediate = immediate or sub is None
    now = timezone.now()
    effective = now if immediate or sub is None else current_period_end(sub, now)
    if sub is not None and sub.cancel_at is not None and not immediate:
        raise PlanChangeRefused(f"Cancellation is already scheduled for {sub.cancel_at:%d %B %Y}.")
    invoice = None
    with transaction.atomic():
        locked = None
        if sub is not None:
            locked = (
                Subscription.objects.select_for_update(of=("self",)).select_related("plan", "tenant").get(pk=sub.pk)
            )
            Subscription.objects.filter(pk=locked.pk).update(cancel_at=effective, cancel_reason=reason[:500])
        Cancellation.objects.create(
            tenant=tenant,
            plan_code=tenant.plan.code if tenant.plan else "",
            reason=reason,
            comment=comment[:5000],
            immediate=immediate,
            effective_at=effective,
            actor_type="system" if actor is None else ("staff" if actor.is_staff else "customer"),
        )
        details = {"reason": reason, "immediate": immediate, "effective_at": effective.isoformat()}
        if immediate:
            invoice = _final_invoice(sub=locked, now=now) if locked is not None else None
            if invoice is not None:
                details["invoice"] = invoice.number
            tenant_status_change(tenant=tenant, to=S.CANCELLED, actor=actor, reason=comment or reason,
                                 event="cancelled", details=details)  # fmt: skip
        else:
            tenant_event_record(
                tenant=tenant, kind="cancellation_scheduled", actor=actor, note=comment, details=details
            )
    return CancelResult(effective, invoice)


def _final_invoice(*, sub: Subscription, now: datetime) -> Invoice | None:
    """End the subscription now and invoice what is left of its current period (rated by
    billing's own engine, so the FINAL invoice says what a period invoice would)."""
    Subscription.objects.filter(pk=sub.pk).update(ended_at=now, status=SubscriptionStatus.CANCELLED)
    sub.refresh_from_db()
    # A fee billed in advance for this period (its first after a trial) covered it to the
    # end: its unused part is given back (draft voided, or a credit note this invoice deducts).
    advance_fee_settle(subscription=sub, ended_at=now)
    start, end = period_bounds(anchor=sub.anchor_day, at=now)
    start = max(start, sub.invoiced_through)
    invoice = None
    if now > start:
        invoice = invoice_draft(subscription=sub, period_start=start, period_end=end, now=now)
    Subscription.objects.filter(pk=sub.pk).update(invoiced_through=max(end, sub.invoiced_through))
    usage_cursor_advance(tenant_id=sub.tenant_id, closed_through=now)
    if invoice is None:
        return None
    Invoice.objects.filter(pk=invoice.pk).update(kind=InvoiceKind.FINAL, period_end=now)
    invoice.refresh_from_db()
    if invoice.status == InvoiceStatus.DRAFT:
        invoice_finalize(invoice=invoice, actor=None, note="final invoice (cancellation)")
    return invoice


def subscription_reactivate(*, tenant: Tenant, actor: User | None, reason: str = "") -> Tenant:
    """Undo a cancellation. Until the period ends (cancellation scheduled): the subscription
    simply goes on. After it took effect (tenant cancelled, data still kept): staff only —
    the tenant becomes active on a new subscription billed from now."""
    tenant = Tenant.objects.select_related("plan").get(pk=tenant.pk)
    now = timezone.now()
    with transaction.atomic():
        sub = Subscription.objects.select_for_update(of=("self",)).filter(tenant=tenant, ended_at__isnull=True).first()
        if tenant.status != S.CANCELLED:
            if sub is None or sub.cancel_at is None:
                raise PlanChangeRefused("Nothing to reactivate: the subscription is not cancelled.")
            Subscription.objects.filter(pk=sub.pk).update(cancel_at=None, cancel_reason="")
            Cancellation.objects.filter(tenant=tenant, reactivated_at__isnull=True).update(reactivated_at=now)
            tenant_event_record(
                tenant=tenant, kind="reactivated", actor=actor, note=reason, details={"undid": "scheduled cancellation"}
            )
            return tenant
        if actor is None or not actor.is_staff:
            raise PlanChangeRefused("The cancellation has taken effect; contact support to reactivate.")
        from lifecycle.retention import tenant_is_deleted

        if tenant_is_deleted(tenant):
            raise PlanChangeRefused("This workspace was deleted after its retention period.")
        tenant_status_change(tenant=tenant, to=S.ACTIVE, actor=actor, reason=reason, event="reactivated")
        Cancellation.objects.filter(tenant=tenant, reactivated_at__isnull=True).update(reactivated_at=now)
        assert tenant.plan_id is not None
        subscription_create(
            tenant=tenant,
            plan_id=tenant.plan_id,
            interval=tenant.billing_interval,
            started_at=now,
            billing_starts_at=now,
        )
    return tenant


def cancellations_due(*, now: datetime | None = None) -> list[int]:
    """End the subscriptions whose scheduled cancellation time has come, and cancel their
    tenants (periodic, hourly; idempotent: an ended subscription is not picked again)."""
    now = now or timezone.now()
    done = []
    for sub_id in Subscription.objects.filter(ended_at__isnull=True, cancel_at__lte=now).values_list("pk", flat=True):
        with transaction.atomic():
            sub = (
                Subscription.objects.select_for_update(of=("self",), skip_locked=True)
                .filter(pk=sub_id, ended_at__isnull=True, cancel_at__lte=now)
                .first()
            )
            if sub is None:
                continue
            assert sub.cancel_at is not None
            Subscription.objects.filter(pk=sub.pk).update(ended_at=sub.cancel_at, status=SubscriptionStatus.CANCELLED)
            tenant = Tenant.objects.get(pk=sub.tenant_id)
            if tenant.status != S.CANCELLED:
                tenant_status_change(
                    tenant=tenant,
                    to=S.CANCELLED,
                    reason=sub.cancel_reason,
                    event="cancelled",
                    details={"scheduled": True, "effective_at": sub.cancel_at.isoformat()},
                )
            done.append(tenant.pk)
    return done
