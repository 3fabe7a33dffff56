"""Trials: reminders before the end, conversion or suspension at the end, extensions.

- Reminders: LIFECYCLE_TRIAL_REMINDER_DAYS (3 and 1) days before `trial_ends_at`, each once
  per trial end (claimed in LifecycleNotice; an extended trial is reminded again). When the
  job runs late and two are due at once only the nearer one is sent.
- At the end, with a payment method on file (BillingProfile.payment_method_id): the tenant
  becomes active (event `converted`) and the first invoice is drafted at once, in the same
  transaction: the plan fee of the period holding the trial end, prorated from it, billed in
  advance (billing.invoicing.invoice_draft_advance). That period's own invoice, drafted by the
  period job when it closes, then holds its usage only. Periods already over (a late job)
  are closed now, in arrears, as usual. See docs/BILLING.md.
- At the end without one: suspended (data kept), the subscription closed with nothing
  billed. `trial_payment_method_added` (connected to billing's `payment_method_saved`)
  reactivates such a tenant on a subscription billed from that moment, and drafts its first
  invoice the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.invoicing import invoice_draft_advance, subscription_close_periods, subscription_create
from billing.models import BillingProfile, Subscription, SubscriptionStatus
from lifecycle.models import LifecycleNotice
from lifecycle.notifications import notice_send_once, workspace_url
from tenants.models import Tenant, TenantEvent, TenantStatus, User
from tenants.services import tenant_event_record
from tenants.status import tenant_status_change

log = logging.getLogger(__name__)

S = TenantStatus
TRIAL_CAUSE = "trial_ended"
MAX_EXTENSION_DAYS = 90


def _reminder_days() -> list[int]:
    return sorted({int(d) for d in settings.LIFECYCLE_TRIAL_REMINDER_DAYS if int(d) > 0})


@dataclass
class ReminderRun:
    sent: int = 0
    skipped: int = 0


def trial_reminders_send(*, now: datetime | None = None) -> ReminderRun:
    """Send the reminders that are due (periodic, hourly). Idempotent: each (trial end,
    days) reminder is claimed once, so re-runs and concurrent runs send nothing twice."""
    now = now or timezone.now()
    days = _reminder_days()
    run = ReminderRun()
    if not days:
        return run
    due = Tenant.objects.customers().filter(
        status=S.TRIALING, trial_ends_at__gt=now, trial_ends_at__lte=now + timedelta(days=days[-1])
    )
    for tenant in due.order_by("pk"):
        assert tenant.trial_ends_at is not None
        left = tenant.trial_ends_at - now
        applicable = [d for d in days if left <= timedelta(days=d)]
        nearest = applicable[0]
        end_key = tenant.trial_ends_at.isoformat()
        for d in applicable[1:]:
            # Too late for the earlier reminder: claim it unsent, so it never follows the nearer one.
            try:
                with transaction.atomic():
                    LifecycleNotice.objects.create(tenant=tenant, kind="trial_reminder", key=f"{d}d:{end_key}")
            except IntegrityError:
                pass
        sent = notice_send_once(
            tenant=tenant,
            kind="trial_reminder",
            key=f"{nearest}d:{end_key}",
            name="trial_reminder",
            context={
                "days": nearest,
                "ends_at": tenant.trial_ends_at,
                "plan": tenant.plan,
                "billing_url": workspace_url(tenant=tenant, path="/billing/"),
                "plan_url": workspace_url(tenant=tenant, path="/plan/"),
            },
        )
        if sent:
            tenant_event_record(
                tenant=tenant,
                kind="trial_reminder",
                details={"days_before": nearest, "trial_ends_at": end_key},
            )
            run.sent += 1
        else:
            run.skipped += 1
    return run


@dataclass
class TrialEndRun:
    converted: list[int] = field(default_factory=list)
    suspended: list[int] = field(default_factory=list)


def trial_ends_process(*, now: datetime | None = None) -> TrialEndRun:
    """End every trial whose time is up (periodic, hourly). Idempotent: a tenant is
    handled only while it is still trialing, under its row lock."""
    now = now or timezone.now()
    run = TrialEndRun()
    ids = list(
        Tenant.objects.customers()
        .filter(status=S.TRIALING, trial_ends_at__lte=now)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for tenant_id in ids:
        try:
            outcome = trial_end(tenant=Tenant.objects.get(pk=tenant_id), now=now)
        except Exception:
            log.exception("ending the trial of tenant %s failed", tenant_id)
            continue
        if outcome == "converted":
            run.converted.append(tenant_id)
        elif outcome == "suspended":
            run.suspended.append(tenant_id)
    return run


def trial_end(*, tenant: Tenant, now: datetime | None = None) -> str:
    """End one trial: "converted" (payment method on file), "suspended" (none), or
    "skipped" (not trialing, or its trial is not over)."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if locked.status != S.TRIALING or locked.trial_ends_at is None or locked.trial_ends_at > now:
            return "skipped"
        profile = BillingProfile.objects.filter(tenant=locked).first()
        sub = Subscription.objects.filter(tenant=locked, ended_at__isnull=True).first()
        if profile is not None and profile.has_payment_method:
            first = None
            if sub is not None:
                Subscription.objects.filter(pk=sub.pk).update(status=SubscriptionStatus.ACTIVE)
                # The first invoice, now: the fee of the period holding the trial end, in advance.
                first = invoice_draft_advance(subscription=sub, now=now)
            tenant_status_change(
                tenant=locked,
                to=S.ACTIVE,
                event="converted",
                reason="Trial ended with a payment method on file.",
                details={
                    "trial_ended_at": locked.trial_ends_at.isoformat(),
                    "plan": locked.plan_id,
                    "first_invoice": str(first) if first is not None else None,
                },
            )
            outcome = "converted"
        else:
            tenant_status_change(
                tenant=locked,
                to=S.SUSPENDED,
                reason="Trial ended without a payment method. Data is kept; adding a card reactivates.",
                details={"cause": TRIAL_CAUSE, "trial_ended_at": locked.trial_ends_at.isoformat()},
            )
            if sub is not None:
                # Nothing was billable yet (all trial): close it, so a suspended tenant is never billed.
                Subscription.objects.filter(pk=sub.pk).update(
                    ended_at=max(now, sub.billing_starts_at),
                    status=SubscriptionStatus.CANCELLED,
                    cancel_reason="trial ended without a payment method",
                )
            outcome = "suspended"
        tenant_id, ends_at = locked.pk, locked.trial_ends_at
        transaction.on_commit(lambda: _trial_end_email(tenant_id=tenant_id, outcome=outcome, ends_at=ends_at))
    if outcome == "converted" and sub is not None:
        # Periods already over (the job ran after a period boundary) are drafted now, in
        # arrears; the current one's usage is billed when it closes (billing.close_periods).
        subscription_close_periods(subscription_id=sub.pk, now=now)
    return outcome


def _trial_end_email(*, tenant_id: int, outcome: str, ends_at: datetime) -> None:
    from lifecycle.tasks import notice_task

    notice_task.delay(tenant_id, f"trial_{outcome}", ends_at.isoformat(), f"trial_{outcome}")


def suspended_by_trial(tenant: Tenant) -> bool:
    """Whether the tenant's current suspension is the one of a trial that ended without a
    payment method (which saving a card lifts)."""
    last = TenantEvent.objects.filter(tenant=tenant, details__to=S.SUSPENDED).order_by("-pk").first()
    return last is not None and (last.details or {}).get("cause") == TRIAL_CAUSE


def trial_payment_method_added(tenant: Tenant, *, actor: User | None = None, reason: str = "") -> str:
    """Call after a payment method was saved for `tenant` (connected to billing's
    `payment_method_saved`). A tenant suspended because its trial ended without one is
    reactivated on a subscription billed from now, and its first invoice is drafted at once,
    as at a conversion: the plan fee from now to the end of the current period, in advance.
    Returns "reactivated", or "unchanged" (trialing tenants convert at the trial's end; other
    suspensions are not the trial's to lift). Idempotent: a second call finds the tenant
    active and bills nothing."""
    with transaction.atomic():
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if locked.status != S.SUSPENDED or not suspended_by_trial(locked):
            return "unchanged"
        now = timezone.now()
        assert locked.plan_id is not None
        sub = subscription_create(
            tenant=locked,
            plan_id=locked.plan_id,
            interval=locked.billing_interval,
            started_at=now,
            billing_starts_at=now,
        )
        first = invoice_draft_advance(subscription=sub, now=now)
        tenant_status_change(
            tenant=locked,
            to=S.ACTIVE,
            actor=actor,
            event="reactivated",
            reason=reason or "Payment method added after the trial ended.",
            details={"cause": "payment_method_added", "first_invoice": str(first) if first is not None else None},
        )
    tenant.status = S.ACTIVE
    return "reactivated"


def on_payment_method_saved(sender: object, *, tenant: Tenant, actor: User | None = None, **kwargs: object) -> None:
    """Receiver of billing.signals.payment_method_saved (connected in LifecycleConfig.ready)."""
    trial_payment_method_added(tenant, actor=actor)


@transaction.atomic
def trial_extend(*, tenant: Tenant, days: int, actor: User | None, reason: str) -> Tenant:
    """Give a trialing tenant `days` more (staff). Billing then starts at the new end;
    reminders are sent again for it. Refused for tenants not in a trial."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Say why the trial is extended.")
    if not 1 <= days <= MAX_EXTENSION_DAYS:
        raise ValidationError(f"Extend by 1 to {MAX_EXTENSION_DAYS} days.")
    locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if locked.status != S.TRIALING or locked.trial_ends_at is None:
        raise ValidationError(f"Only a trialing tenant's trial can be extended (this one is {locked.status}).")
    old = locked.trial_ends_at
    new = max(old, timezone.now()) + timedelta(days=days)
    Tenant.objects.filter(pk=locked.pk).update(trial_ends_at=new)
    # Nothing is billed during a trial: billing starts at its (new) end.
    Subscription.objects.filter(tenant=locked, ended_at__isnull=True).update(billing_starts_at=new)
    tenant_event_record(
        tenant=locked,
        kind="trial_extended",
        actor=actor,
        note=reason,
        details={"days": days, "from": old.isoformat(), "to": new.isoformat()},
    )
    tenant.trial_ends_at = new
    return tenant
