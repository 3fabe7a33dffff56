"""Invoices: drafting closed periods, finance review (finalize, void), credit notes.

The period job is idempotent three ways: each subscription is locked (SKIP LOCKED, so two
workers split the work instead of doubling it), its `invoiced_through` cursor moves in the
same transaction as the draft it made, and a unique constraint allows one live invoice per
tenant, kind and period. A crash halfway leaves finished tenants done and the rest to the
next run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.documents import money
from billing.models import (
    BillingProfile,
    CreditApplication,
    CreditNote,
    Discount,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceSequence,
    InvoiceStatus,
    LineKind,
    Subscription,
)
from billing.rating import (
    RESOURCE_METER,
    LineSpec,
    discount_line,
    from_minor,
    plan_fee_line,
    tax_line,
    terms_of,
    usage_line,
)
from metering.periods import period_bounds
from metering.selectors import meter_total, meter_values
from metering.services import usage_cursor_advance
from tenants.models import PlanLimit, Tenant, User
from tenants.services import tenant_event_record

log = logging.getLogger(__name__)

SWING_RATIO = Decimal("0.5")  # ±50% against the previous invoice …
SWING_MIN_MINOR = 5_000  # … and at least 50.00 in the currency
PAYMENT_TERMS = timedelta(days=14)


def _months_between(a: datetime, b: datetime) -> int:
    return (b.year - a.year) * 12 + (b.month - a.month)


@transaction.atomic
def subscription_create(
    *, tenant: Tenant, plan_id: int, interval: str, started_at: datetime, billing_starts_at: datetime
) -> Subscription:
    """Open the tenant's subscription. Its periods use the tenant's quota anchor, so usage
    limits and invoices cover the same months. Idempotent: an open subscription is returned."""
    existing = Subscription.objects.filter(tenant=tenant, ended_at__isnull=True).first()
    if existing is not None:
        return existing
    anchor = min(tenant.created_at.astimezone(UTC).day, 28)
    first_start, _ = period_bounds(anchor=anchor, at=billing_starts_at)
    BillingProfile.objects.get_or_create(tenant=tenant)
    return Subscription.objects.create(
        tenant=tenant,
        plan_id=plan_id,
        interval=interval,
        started_at=started_at,
        anchor_day=anchor,
        billing_starts_at=billing_starts_at,
        invoiced_through=first_start,
    )


@dataclass
class CloseResult:
    drafted: int = 0
    finalized: int = 0
    skipped: int = 0
    failed: int = 0


def invoices_close_due(*, now: datetime | None = None, batch: int = 500) -> CloseResult:
    """Draft an invoice for every subscription period that has ended. Safe to run on many
    workers at once and to re-run after a crash."""
    now = now or timezone.now()
    result = CloseResult()
    last_id = 0
    while True:
        rows = list(
            Subscription.objects.filter(pk__gt=last_id, invoiced_through__lt=now)
            .order_by("pk")
            .values_list("pk", "anchor_day", "invoiced_through")[:batch]
        )
        if not rows:
            return result
        last_id = rows[-1][0]
        for sub_id, anchor, invoiced_through in rows:
            # Most open subscriptions are mid-period on any given day: their period has not
            # ended, and locking them only to find that out cost ~1.4 ms each. The check is
            # made again under the lock (a stale read here can only make it look more due).
            if period_bounds(anchor=anchor, at=invoiced_through)[1] > now:
                continue
            try:
                made = subscription_close_periods(subscription_id=sub_id, now=now)
            except Exception:
                log.exception("closing periods of subscription %s failed", sub_id)
                result.failed += 1
                continue
            if made is None:
                result.skipped += 1
            for invoice in made or []:
                result.drafted += 1
                result.finalized += invoice.status == InvoiceStatus.FINALIZED


def subscription_close_periods(*, subscription_id: int, now: datetime) -> list[Invoice] | None:
    """Close each ended period of one subscription, oldest first, one transaction each.
    None when another worker holds the subscription."""
    made: list[Invoice] = []
    while True:
        with transaction.atomic():
            sub = (
                Subscription.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("plan", "tenant")
                .filter(pk=subscription_id)
                .first()
            )
            if sub is None:
                return made or None
            start, end = period_bounds(anchor=sub.anchor_day, at=sub.invoiced_through)
            if sub.invoiced_through != start:
                start = sub.invoiced_through  # a cursor moved mid-period (plan change): close the rest
            if end > now or (sub.ended_at is not None and start >= sub.ended_at):
                return made
            invoice = invoice_draft(subscription=sub, period_start=start, period_end=end, now=now)
            Subscription.objects.filter(pk=sub.pk).update(invoiced_through=end, period_fee_plan=None)
            if sub.pending_plan_id or sub.pending_interval:
                from billing.changes import subscription_apply_pending

                subscription_apply_pending(subscription=sub, at=end)
            usage_cursor_advance(tenant_id=sub.tenant_id, closed_through=end)
            if invoice is not None:
                made.append(invoice)
        # The cursor is now `end`, a period start. Unless the next period has ended too (the
        # job ran late), the next turn would lock and re-read the row only to return `made`:
        # stop here instead (the cursor only moves forward and the anchor never changes, so
        # the re-read could not decide otherwise). Saves a transaction per subscription.
        if period_bounds(anchor=sub.anchor_day, at=end)[1] > now:
            return made


def _fee_line(sub: Subscription, start: datetime, end: datetime) -> LineSpec | None:
    """The plan fee owed for the billable part of the period [start, end) (rating.plan_fee_line)."""
    billable_start = max(start, sub.billing_starts_at)
    billable_end = min(end, sub.ended_at or end, sub.cancel_at or end)
    first_start, _ = period_bounds(anchor=sub.anchor_day, at=sub.billing_starts_at)
    year_starts = _months_between(first_start, start) % 12 == 0
    return plan_fee_line(
        plan=sub.period_fee_plan or sub.plan,
        interval=sub.interval,
        period_start=start,
        period_end=end,
        billable_start=billable_start,
        billable_end=billable_end,
        year_starts=year_starts and billable_end > billable_start,
    )


def _advance_invoices(sub: Subscription, start: datetime, end: datetime) -> list[Invoice]:
    """The live invoices that billed the fee of the period [start, end) in advance. Only the
    period holding the subscription's billing start can have one (invoice_draft_advance)."""
    if not start <= sub.billing_starts_at < end:
        return []
    return list(
        Invoice.objects.filter(
            tenant_id=sub.tenant_id,
            subscription_id=sub.pk,
            kind=InvoiceKind.ADVANCE,
            period_start__gte=start,
            period_end__lte=end,
        ).exclude(status=InvoiceStatus.VOID)
    )


def _fee_billed_in_advance(invoices: list[Invoice]) -> int:
    return sum(InvoiceLine.objects.filter(invoice__in=invoices, kind=LineKind.BASE).values_list("amount", flat=True))


def _plan_lines(sub: Subscription, start: datetime, end: datetime) -> tuple[list[LineSpec], int]:
    billable_start = max(start, sub.billing_starts_at)
    billable_end = min(end, sub.ended_at or end, sub.cancel_at or end)
    lines: list[LineSpec] = []
    base_total = 0
    fee = _fee_line(sub, start, end)
    advance = _advance_invoices(sub, start, end) if fee is not None else []
    if fee is not None and advance:
        # The fee was billed in advance when the trial converted: bill only what that did not
        # (nothing, unless the period's fee grew since). An early end is settled by
        # advance_fee_settle, never by a negative line here.
        billed = _fee_billed_in_advance(advance)
        if fee.amount > billed:
            fee.details["billed_in_advance"] = billed
            fee.description = f"{fee.description}, less {from_minor(billed, sub.plan.currency):.2f} billed in advance"
            fee.amount -= billed
        else:
            fee = None
    if fee is not None:
        lines.append(fee)
        base_total = fee.amount
    if billable_end > billable_start:
        limits = list(PlanLimit.objects.filter(plan=sub.plan).exclude(resource="seats").order_by("resource"))
        codes = [RESOURCE_METER[limit.resource] for limit in limits]
        totals = meter_values(tenant_id=sub.tenant_id, codes=codes, start=billable_start, end=billable_end)
        for limit, meter in zip(limits, codes, strict=True):
            used = totals.get(meter, Decimal(0))
            lines.append(
                usage_line(
                    limit=limit,
                    currency=sub.plan.currency,
                    used=used,
                    period_start=billable_start,
                    period_end=billable_end,
                    tenant_slug=sub.tenant.slug,
                )
            )
    return lines, base_total


def _late_adjustments(sub: Subscription, before: datetime) -> list[LineSpec]:
    """Usage that arrived after its period was invoiced: re-rate those periods now and bill
    what was not billed before (idempotent: what earlier invoices charged is subtracted).

    Only periods that hold late events are re-rated, each with the terms its own invoice
    was rated with (recorded on its usage lines), not today's plan: an upgrade since then
    neither rewrites August's included quantity nor its overage price."""
    with connection.cursor() as cursor:
        # The daily rollup's partial index on late rows: a look-up, not a scan of the history.
        cursor.execute(
            "SELECT day FROM metering_usagedaily WHERE tenant_id = %s AND late_events > 0 AND day < %s",
            [sub.tenant_id, before.astimezone(UTC).date() + timedelta(days=1)],
        )
        late_days = [datetime.combine(row[0], datetime.min.time(), tzinfo=UTC) for row in cursor.fetchall()]
    if not late_days:
        return []
    earlier = [
        old
        for old in Invoice.objects.filter(tenant_id=sub.tenant_id, kind=InvoiceKind.PERIOD, period_end__lte=before)
        .exclude(status=InvoiceStatus.VOID)
        .order_by("period_start")
        if any(old.period_start - timedelta(days=1) < day < old.period_end for day in late_days)
    ]
    adjustments: list[LineSpec] = []
    current = {lim.resource: lim for lim in PlanLimit.objects.filter(plan=sub.plan).exclude(resource="seats")}
    for old in earlier:
        billed: dict[str, int] = {}
        for billed_line in InvoiceLine.objects.filter(
            invoice__tenant_id=sub.tenant_id,
            kind__in=[LineKind.USAGE, LineKind.ADJUSTMENT],
            period_start__gte=old.period_start,
            period_start__lt=old.period_end,
        ).exclude(invoice__status=InvoiceStatus.VOID):
            billed[billed_line.meter] = billed.get(billed_line.meter, 0) + billed_line.amount
        rated_with = {
            terms.resource: terms
            for line in old.lines.filter(kind=LineKind.USAGE)
            if (terms := terms_of(line.details)) is not None
        }
        start = max(old.period_start, sub.billing_starts_at)
        for resource in sorted(rated_with or current):
            limit = rated_with.get(resource) or current[resource]
            meter = RESOURCE_METER.get(resource, resource)
            used = meter_total(tenant_id=sub.tenant_id, meter_code=meter, start=start, end=old.period_end)
            line = usage_line(
                limit=limit,
                currency=old.currency,
                used=used,
                period_start=start,
                period_end=old.period_end,
                tenant_slug=sub.tenant.slug,
                description_prefix=f"Late usage for {start:%Y-%m-%d} to {old.period_end:%Y-%m-%d}: ",
            )
            owed = line.amount - billed.get(meter, 0)
            if owed > 0:
                line.kind = LineKind.ADJUSTMENT
                line.amount = owed
                line.details["previously_billed"] = billed.get(meter, 0)
                adjustments.append(line)
    return adjustments


def invoice_draft(
    *, subscription: Subscription, period_start: datetime, period_end: datetime, now: datetime
) -> Invoice | None:
    """Rate one period of a subscription into a draft invoice (atomic with the caller)."""
    sub = subscription
    lines, base_total = _plan_lines(sub, period_start, period_end)
    lines += _late_adjustments(sub, period_start)
    return _invoice_make(
        sub=sub, kind=InvoiceKind.PERIOD, period_start=period_start, period_end=period_end, lines=lines,
        base_total=base_total,
    )  # fmt: skip


def invoice_draft_advance(*, subscription: Subscription, now: datetime) -> Invoice | None:
    """When a trial converts: draft the plan fee of the first billable period — the one
    holding `billing_starts_at`, prorated from it — now, in advance. That period's own
    invoice (the period job, or a FINAL one) then bills its usage only, since `_plan_lines`
    deducts the fee billed here. Finance review and auto-approval apply as to any draft.

    None when there is nothing to bill in advance: billing has not started, the period is
    over or already closed (the period job bills it in arrears, with its fee), nothing is
    due (a free plan), or it was drafted before — so a second call never bills twice (the
    subscription is locked, and the unique constraint holds one live advance invoice per
    tenant and period)."""
    with transaction.atomic():
        sub = (
            Subscription.objects.select_for_update(of=("self",))
            .select_related("plan", "tenant", "period_fee_plan")
            .get(pk=subscription.pk)
        )
        if sub.ended_at is not None or sub.billing_starts_at > now:
            return None
        start, end = period_bounds(anchor=sub.anchor_day, at=sub.billing_starts_at)
        if end <= now or sub.invoiced_through >= end or _advance_invoices(sub, start, end):
            return None
        fee = _fee_line(sub, start, end)
        if fee is None:
            return None
        return _invoice_make(
            sub=sub, kind=InvoiceKind.ADVANCE, period_start=sub.billing_starts_at, period_end=end, lines=[fee],
            base_total=fee.amount,
        )  # fmt: skip


def advance_fee_settle(*, subscription: Subscription, ended_at: datetime) -> list[Invoice | CreditNote]:
    """The subscription ends at `ended_at`, inside a period whose fee was billed in advance
    (cancelled at once in its first period): give back the fee for the rest of the period,
    so the customer pays what a period invoice in arrears would have charged. Call before
    drafting the FINAL invoice, with `ended_at` set on the subscription (atomic with it).

    - An advance invoice still in draft is voided: the FINAL invoice then bills the fee up
      to `ended_at` itself.
    - One already issued is never changed: it gets a credit note for the unused part of its
      fee (after its discount; before tax, as credits are deducted), which the FINAL invoice
      deducts as far as it goes; the rest stays the tenant's credit for later invoices.
    A yearly fee is not prorated (docs/BILLING.md), so it leaves nothing to give back."""
    sub = Subscription.objects.select_related("plan", "period_fee_plan").get(pk=subscription.pk)
    start, end = period_bounds(anchor=sub.anchor_day, at=ended_at)
    done: list[Invoice | CreditNote] = []
    for advance in _advance_invoices(sub, start, end):
        if advance.status == InvoiceStatus.DRAFT:
            done.append(
                invoice_void(
                    invoice=advance,
                    actor=None,
                    reason=f"The subscription ended on {ended_at:%Y-%m-%d}, inside the period this fee was billed "
                    "for in advance: the final invoice bills the fee up to then.",
                )
            )
            continue
        lines = list(advance.lines.all())
        billed = sum(line.amount for line in lines if line.kind == LineKind.BASE)
        discount = sum(line.amount for line in lines if line.kind == LineKind.DISCOUNT)  # negative
        used = _fee_line(sub, start, end)
        unused = billed - (used.amount if used is not None else 0)
        if billed <= 0 or unused <= 0:
            continue
        unused_net = int(
            (Decimal(unused) * Decimal(billed + discount) / Decimal(billed)).quantize(Decimal(1), ROUND_HALF_UP)
        )
        # What was credited on it already counts as given back (so a second call gives nothing).
        credited = sum(advance.credit_notes.values_list("amount", flat=True))
        owed = min(unused_net - credited, advance.total - credited)
        if owed > 0:
            done.append(
                credit_note_issue(
                    invoice=advance,
                    amount=owed,
                    actor=None,
                    reason=f"Unused plan fee from {ended_at:%Y-%m-%d} to {end:%Y-%m-%d} (cancelled; the fee "
                    "was billed in advance)",
                )
            )
    return done


def _previous_period(tenant_id: int, before: datetime) -> list[Invoice]:
    """The invoices of the tenant's last period ending by `before`: its period invoice and the
    fee billed in advance for it, if any (one query)."""
    live = Invoice.objects.filter(tenant_id=tenant_id, kind__in=[InvoiceKind.PERIOD, InvoiceKind.ADVANCE]).exclude(
        status=InvoiceStatus.VOID
    )
    last_end = live.filter(period_end__lte=before).order_by("-period_end").values("period_end")[:1]
    return list(live.filter(period_end=Subquery(last_end)))


def _invoice_make(
    *,
    sub: Subscription,
    kind: str,
    period_start: datetime,
    period_end: datetime,
    lines: list[LineSpec],
    base_total: int,
) -> Invoice | None:
    """Lines → a draft invoice: the discount on the plan fee (`base_total`), credits, tax, the
    swing flag; then finalized at once when the tenant is auto-approved. None when nothing is
    due, or when the (tenant, kind, period) invoice exists already (atomic with the caller)."""
    discount = (
        Discount.objects.select_related("coupon")
        .filter(tenant_id=sub.tenant_id, starts_at__lt=period_end, coupon__active=True)
        .order_by("-starts_at")
        .first()
    )
    used_discount: Discount | None = None
    if discount is not None and (
        discount.coupon.duration_periods is None or discount.periods_used < discount.coupon.duration_periods
    ):
        line = discount_line(
            base_amount=base_total,
            percent_off=discount.coupon.percent_off,
            amount_off=discount.coupon.amount_off,
            code=discount.coupon.code,
        )
        if line is not None:
            lines.append(line)
            used_discount = discount
    subtotal = sum(line.amount for line in lines)
    applied = _credits_apply(sub.tenant_id, subtotal, lines)
    subtotal -= sum(amount for _, amount in applied)
    if not any(line.amount for line in lines):
        # Nothing is due (free plan, or a yearly plan between fee months with no overage):
        # no invoice for finance to wade through. The usage stays queryable as always.
        return None
    profile = BillingProfile.objects.filter(tenant_id=sub.tenant_id).first()
    tax = tax_line(taxable=subtotal, rate=profile.tax_rate if profile else Decimal(0))
    if tax is not None:
        lines.append(tax)
    before = _previous_period(sub.tenant_id, period_start)
    previous = sum(invoice.total for invoice in before) if before else None
    total = subtotal + (tax.amount if tax else 0)
    # A yearly fee makes every twelfth invoice jump by design: compare yearly plans without it.
    yearly = sub.interval == "yearly"
    compare_now = total - (base_total if yearly else 0)
    compare_before = previous
    if yearly and previous is not None:
        compare_before = previous - sum(
            InvoiceLine.objects.filter(invoice__in=before, kind=LineKind.BASE).values_list("amount", flat=True)
        )
    swing = (
        compare_before is not None
        and abs(compare_now - compare_before) >= SWING_MIN_MINOR
        and (compare_before == 0 or abs(Decimal(compare_now - compare_before)) / Decimal(compare_before) > SWING_RATIO)
    )
    try:
        with transaction.atomic():
            invoice = Invoice.objects.create(
                tenant_id=sub.tenant_id,
                subscription=sub,
                kind=kind,
                period_start=period_start,
                period_end=period_end,
                currency=sub.plan.currency,
                subtotal=subtotal,
                tax=tax.amount if tax else 0,
                total=total,
                previous_total=previous,
                swing_flag=swing,
            )
    except IntegrityError:
        return None  # drafted already (a second worker, or a re-run): nothing twice
    if used_discount is not None:  # counted once the invoice that uses it exists
        Discount.objects.filter(pk=used_discount.pk).update(periods_used=F("periods_used") + 1)
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=invoice,
            position=i,
            kind=spec.kind,
            description=spec.description[:300],
            meter=spec.meter,
            quantity=spec.quantity,
            unit_price=spec.unit_price,
            amount=spec.amount,
            period_start=spec.period_start,
            period_end=spec.period_end,
            details=spec.details,
            usage_query=spec.usage_query,
        )
        for i, spec in enumerate(lines, start=1)
    )
    CreditApplication.objects.bulk_create(
        CreditApplication(note=note, invoice=invoice, amount=amount) for note, amount in applied
    )
    if profile is not None and profile.auto_approve:
        invoice_finalize(invoice=invoice, actor=None, note="auto-approved")
    return invoice


def _credits_apply(tenant_id: int, subtotal: int, lines: list[LineSpec]) -> list[tuple[CreditNote, int]]:
    """Deduct the tenant's open credit, oldest note first, as much as the subtotal allows (a
    note bigger than what is due is deducted in part; the rest stays for later invoices).
    Adds the credit lines; returns (note, amount) to record once the invoice exists. The notes
    are locked: two invoices of one tenant drafted at once never spend the same credit."""
    spent = (
        CreditApplication.objects.filter(note=OuterRef("pk"))
        .values("note")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    open_notes = (
        CreditNote.objects.select_for_update(of=("self",))
        .select_related("invoice")
        .filter(invoice__tenant_id=tenant_id)
        .annotate(spent=Coalesce(Subquery(spent), 0))
        .filter(spent__lt=F("amount"))
        .order_by("created_at", "pk")
    )
    applied: list[tuple[CreditNote, int]] = []
    for note in open_notes:
        if subtotal <= 0:
            break
        left = note.amount - note.spent
        take = min(left, subtotal)
        text = f"Credit note {note.number} (invoice {note.invoice.number}): {note.reason}"
        if take < left:
            rest = money(left - take, note.invoice.currency)
            text += f" ({money(take, note.invoice.currency)} of {money(left, note.invoice.currency)}; {rest} left)"
        lines.append(
            LineSpec(
                kind=LineKind.CREDIT,
                description=text,
                amount=-take,
                details={"credit_note": note.number, "credit_left_after": left - take},
            )
        )
        subtotal -= take
        applied.append((note, take))
    return applied


def _next_number(series: str, year: int) -> str:
    """The next number of the series for the year (numbering restarts each year)."""
    sequence, _ = InvoiceSequence.objects.select_for_update().get_or_create(series=f"{series}-{year}")
    number = sequence.next_number
    InvoiceSequence.objects.filter(pk=sequence.pk).update(next_number=number + 1)
    return f"{series}-{year}-{number:06d}"


@transaction.atomic
def invoice_finalize(*, invoice: Invoice, actor: User | None, note: str = "") -> Invoice:
    """Approve a draft: give it the next gap-free number, make it immutable, and (after
    commit) email it and collect payment. Refused for anything but a draft."""
    locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if locked.status != InvoiceStatus.DRAFT:
        raise ValidationError(f"Invoice {locked} is {locked.get_status_display().lower()}, not a draft.")
    now = timezone.now()
    locked.number = _next_number("INV", now.year)
    locked.status = InvoiceStatus.FINALIZED
    locked.finalized_at = now
    locked.finalized_by = actor
    locked.due_at = now + PAYMENT_TERMS
    locked.save(update_fields=["number", "status", "finalized_at", "finalized_by", "due_at"])
    tenant_event_record(
        tenant=locked.tenant,
        kind="invoice_finalized",
        actor=actor,
        note=note,
        details={"invoice": locked.number, "total": locked.total, "currency": locked.currency},
    )
    from billing.tasks import invoice_after_finalize

    invoice_id = locked.pk
    transaction.on_commit(lambda: invoice_after_finalize.delay(invoice_id))
    invoice.__dict__.update(locked.__dict__)
    return invoice


@transaction.atomic
def invoice_void(*, invoice: Invoice, actor: User | None, reason: str) -> Invoice:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Say why the invoice is voided.")
    locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if locked.status not in (InvoiceStatus.DRAFT, InvoiceStatus.FINALIZED, InvoiceStatus.PAYMENT_FAILED):
        raise ValidationError(f"Invoice {locked} is {locked.get_status_display().lower()} and cannot be voided.")
    # Its credit notes stay owed to the customer (deducted from a later invoice), so voiding
    # the whole charge as well would credit them twice: credit the rest instead.
    notes = list(CreditNote.objects.filter(invoice=locked).order_by("pk").values_list("number", flat=True))
    if notes:
        raise ValidationError(
            f"Invoice {locked} has credit notes ({', '.join(notes)}) and cannot be voided; "
            "issue a credit note for the rest instead."
        )
    locked.status = InvoiceStatus.VOID
    locked.voided_at = timezone.now()
    locked.void_reason = reason[:500]
    locked.next_payment_attempt_at = None
    locked.save(update_fields=["status", "voided_at", "void_reason", "next_payment_attempt_at"])
    CreditApplication.objects.filter(invoice=locked).delete()  # credits deducted here are owed again
    # A coupon period this invoice used is given back (a re-drafted period uses it again).
    for code in locked.lines.filter(kind=LineKind.DISCOUNT).values_list("details__coupon", flat=True):
        Discount.objects.filter(tenant_id=locked.tenant_id, coupon__code=code, periods_used__gt=0).update(
            periods_used=F("periods_used") - 1
        )
    tenant_event_record(
        tenant=locked.tenant, kind="invoice_voided", actor=actor, note=reason, details={"invoice": str(locked)}
    )
    invoice.__dict__.update(locked.__dict__)
    return invoice


# A change of these since a period began means the subscription's terms are no longer the
# ones that period was rated with (billing/changes.py, lifecycle/plan_changes.py, tenants).
PLAN_CHANGE_EVENTS = ("upgraded", "downgraded", "plan_changed", "interval_changed")


@transaction.atomic
def invoice_redraft(*, invoice: Invoice, actor: User | None, now: datetime | None = None) -> Invoice:
    """Rate the period of a void period invoice again into a new draft: finance voided it (a
    usage or configuration mistake, since corrected) and wants the period billed right.
    Refused, with the reason, when the invoice is not a void period invoice, the period has a
    live invoice again, or the plan or interval changed since the period began (today's terms
    would not be that period's: correct it with a credit note or by hand instead)."""
    now = now or timezone.now()
    locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if locked.status != InvoiceStatus.VOID:
        state = locked.get_status_display().lower()
        raise ValidationError(f"Invoice {locked} is {state}: only a void invoice is redrafted.")
    if locked.kind != InvoiceKind.PERIOD or locked.subscription_id is None:
        raise ValidationError(f"Invoice {locked} is not a billing period's invoice; only those are redrafted.")
    period = f"{locked.period_start:%Y-%m-%d} to {locked.period_end:%Y-%m-%d}"
    live = (
        Invoice.objects.filter(
            tenant_id=locked.tenant_id,
            kind=InvoiceKind.PERIOD,
            period_start=locked.period_start,
            period_end=locked.period_end,
        )
        .exclude(status=InvoiceStatus.VOID)
        .first()
    )
    if live is not None:
        raise ValidationError(f"The period {period} has a live invoice already ({live}).")
    sub = (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("plan", "tenant", "period_fee_plan")
        .get(pk=locked.subscription_id)
    )
    if sub.invoiced_through < locked.period_end:
        raise ValidationError(f"The period {period} is not closed yet: the daily job drafts it when it is.")
    from tenants.models import TenantEvent

    if TenantEvent.objects.filter(
        tenant_id=sub.tenant_id, kind__in=PLAN_CHANGE_EVENTS, created_at__gt=locked.period_start
    ).exists():
        raise ValidationError(
            f"The plan or billing interval changed after {locked.period_start:%Y-%m-%d}: today's terms are not "
            "the ones of that period. Correct it with a credit note or a manual invoice instead."
        )
    new = invoice_draft(subscription=sub, period_start=locked.period_start, period_end=locked.period_end, now=now)
    if new is None:
        raise ValidationError(f"Nothing is due for {period} now: no invoice was made.")
    tenant_event_record(
        tenant=sub.tenant,
        kind="invoice_redrafted",
        actor=actor,
        details={"void": str(locked), "draft": new.pk, "period": period},
    )
    return new


@transaction.atomic
def credit_note_issue(*, invoice: Invoice, amount: int, reason: str, actor: User | None) -> CreditNote:
    """Credit part or all of a finalized or paid invoice; the credit is deducted from the
    tenant's next invoice. The invoice itself never changes."""
    locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if locked.status not in (InvoiceStatus.FINALIZED, InvoiceStatus.PAID, InvoiceStatus.PAYMENT_FAILED):
        raise ValidationError("Credit notes are issued against finalized invoices (edit or void a draft instead).")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Say why the credit is given.")
    credited = sum(note.amount for note in locked.credit_notes.all())
    if not 0 < amount <= locked.total - credited:
        raise ValidationError(f"The credit must be between 0.01 and the uncredited total ({locked.total - credited}).")
    note = CreditNote.objects.create(
        number=_next_number("CN", timezone.now().year), invoice=locked, amount=amount, reason=reason[:500],
        created_by=actor,
    )  # fmt: skip
    tenant_event_record(
        tenant=locked.tenant,
        kind="credit_note_issued",
        actor=actor,
        note=reason,
        details={"invoice": locked.number, "credit_note": note.number, "amount": amount},
    )
    return note
