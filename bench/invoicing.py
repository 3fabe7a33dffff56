"""Invoicing benchmark: the period job drafting invoices for 10,000 tenant subscriptions.

    .venv/bin/python -m saasops.devstack exec --profile=bench -- .venv/bin/python bench/invoicing.py

Target (issue 5): rate and draft invoices for 10,000 tenant subscriptions with realistic
usage in under 120 s on this machine. Measured: `billing.invoicing.invoices_close_due`, the
function the daily `billing.close_periods` task runs, in this process, over every
subscription whose period has ended. The task itself calls it with now = the wall clock;
here `now` is fixed in the past (2025-02-28 00:05 UTC) so that exactly one period of each
subscription is due, whatever today's date, and no subscription of another population is.

No tenant schemas. The period job reads and writes only public-schema tables keyed by
tenant id (tenants_tenant, tenants_plan/planlimit, billing_*, metering_meter,
metering_meterhourly, metering_usagehourly, metering_usagecursor); nothing on its path
switches to a tenant schema (no schema_context/set_tenant in billing/ or metering/). So the
10,000 tenants are made as bare rows (bulk INSERT, no schema, no domain, no owner), slugs
`ibench-00001` …, which is what the job sees of a tenant provisioned for real. Such rows
would break anything that walks tenant schemas (migrate_schemas, migrate_tenants in
bench/migrate.py), so the run deletes everything it made at the end (and whatever a crashed
earlier run left, at the start): nothing is kept between runs. The standing population of
bench/provisioning.py (bench-0001 …) is not touched.

1. Remove leftovers of a crashed run (ibench-*; before bootstrap, whose migrate_tenants
   would fail on them). Bootstrap. Refuse to run when any other subscription would be due
   at the fixed job time (the job closes every due subscription, not only ours).
2. Population (seeded, public rows only): --subscriptions tenants with a billing profile and
   a subscription, plans mixed Free 20% / Starter 40% / Growth 30% / Enterprise 10% (the
   catalogue's prices, included quantities and overage packages, read from the database).
   Of the paid ones 20% are yearly (0–11 periods into their year, so about 1 in 12 owes the
   yearly fee now and the rest only overage, if any), 3% have their trial end inside the
   period (fee prorated, usage before it not billed), 2% have a cancellation scheduled at
   the period end. Anchors spread over days 1–28; the period closed is January 2025
   [2025-01-<a>, 2025-02-<a>), the job runs at 2025-02-28 00:05 UTC (the schedule's 00:05
   the day the last of them ended), so every subscription has exactly one period due.
   Per resource and period the usage is under the included quantity (~77%), exactly at it
   (3%) or over it (20%, up to +60%; paid plans only: Free blocks). 25% pay tax (20%, 19%,
   8.25%, 7%); 6% of the paid ones have a coupon (20% or 12.5% off, 10.00 off for 6
   periods, or one already used up); 2% of the paid monthly ones hold an unapplied credit
   note. Free plans and yearly plans between fee months without overage owe nothing: they
   are rated like the others but get no invoice (about 27% of the subscriptions).
   Usage goes into the rollups the rating engine reads, by bulk SQL: metering_meterhourly
   (api_calls, input/output/ai_tokens in each active hour — Free 15, Starter 120, Growth
   220, Enterprise 400 hours a period — and a daily storage_gb reading) and
   metering_usagehourly (one row per active hour with a full latency histogram; production
   has one per model and department, so more). No raw events (the engine never reads them).
   History: the previous period (December 2024) has its usage too and is invoiced (paid
   invoices with base, usage and tax lines, made by this script); yearly subscriptions
   also have their last yearly-fee invoice. The usage cursor stands at the period start.
   Late usage: 1% of the paid monthly tenants (over on AI tokens in December) get one more
   event for December through the real ingest (metering.ledger.events_record), received
   after December was closed, so it is flagged late and the job re-rates December and bills
   an adjustment line.
3. Query sample: --sample subscriptions closed under CaptureQueriesContext in a transaction
   rolled back afterwards: SQL statements per subscription, by kind and table.
4. Measured: one `invoices_close_due(now=2025-02-28 00:05)` over all of them. Wall time vs
   the target; per subscription (timed around each subscription_close_periods call; split
   into drafted, late usage and nothing due), per invoice (wall / drafted), SQL statements
   and time spent waiting on them (an execute_wrapper), CPU of this process and of
   PostgreSQL (and of other processes: the machine is shared). --profile: cProfile of this
   run to bench/results/invoicing.prof (slower then).
5. Verify: one draft per tenant and period exactly where the arithmetic (recomputed here
   from the rollups, independently of billing/rating.py) says something is due, with the
   expected lines (kind and amount, in order) and totals; none where nothing is due;
   every subscription's cursor moved; used coupons counted. A digest
   of all drafted invoices (lines, descriptions, details) is reported: the population is
   seeded, so two runs with the same options give the same digest (a behaviour check for
   changes to the rating code; --dump FILE writes the invoices themselves, to diff).
6. Run the job again: it must draft nothing (idempotent). Its time is reported too: it
   still visits every subscription (each one's cursor, the open period's start, is < now).
7. Delete everything the run made; write bench/results/invoicing.json. Exit 1 when the
   target is missed or a check fails.

At 10,000 subscriptions the setup writes ~16.6 M rollup rows (~100 s) and the cleanup
deletes them again (~15 s): about 4 minutes in all. --subscriptions 300 is a quick trial.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import math
import pstats
import random
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, Timer, django_setup, postgres_version, say, summary, write_result  # noqa: E402
from _http import CpuSampler, postgres_pids, self_pids, wait_quiet  # noqa: E402

TARGET_S = 120.0
PREFIX = "ibench-"  # never a prefix of bench-/benchx-/wbench- slugs, nor they of it
NOW = datetime(2025, 2, 28, 0, 5, tzinfo=UTC)
# plan code: (share of tenants, active hours per period)
PLAN_MIX = {"free": (0.20, 15), "starter": (0.40, 120), "growth": (0.30, 220), "enterprise": (0.10, 400)}
MODELS = {"free": "gpt-4o-mini", "starter": "gpt-4o-mini", "growth": "gpt-4o", "enterprise": "gpt-4o"}
TAX_RATES = [Decimal("0.2000"), Decimal("0.1900"), Decimal("0.0825"), Decimal("0.0700")]
# code: (percent_off, amount_off, duration_periods, periods_used or None for "random, still running")
COUPONS = {
    "ibench-pct20": (Decimal("20"), None, None, 0),
    "ibench-pct12-5": (Decimal("12.50"), None, None, 0),
    "ibench-off10": (None, 1_000, 6, None),
    "ibench-spent": (None, 1_000, 3, 3),
}
LATE_TOKENS = (2_000_000, 500_000)  # input, output of the one late event (2.5 M AI tokens)
RESOURCES = ("ai_tokens", "api_calls", "storage_gb")  # the engine's order (by resource name)
QUERY_METERS = ("api_calls", "ai_tokens", "input_tokens", "output_tokens")
# statistics refreshed after the bulk load (autovacuum would get there later)
ANALYZED = ("metering_meterhourly", "metering_usagehourly", "billing_invoice", "billing_invoiceline",
            "billing_subscription", "tenants_tenant", "billing_billingprofile", "metering_usagecursor")  # fmt: skip


def month_add(dt: datetime, months: int) -> datetime:
    index = dt.year * 12 + dt.month - 1 + months
    return dt.replace(year=index // 12, month=index % 12 + 1)


def half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


# --- the population ------------------------------------------------------------------------


@dataclass
class Limit:
    included: int | None
    on_exceed: str
    size: int
    price: Decimal


@dataclass
class PlanInfo:
    id: int
    code: str
    price_monthly: int
    price_yearly: int
    limits: dict[str, Limit]


@dataclass
class Spec:
    i: int
    plan: str
    interval: str
    kind: str  # monthly | trial | yearly
    anchor: int
    created: datetime
    billing_starts: datetime
    months_in: int  # yearly: periods since the first billable one (0: January is the first)
    cancel_at: datetime | None = None
    tax_rate: Decimal = Decimal(0)
    coupon: str | None = None
    periods_used: int = 0
    credit: int | None = None
    late: bool = False
    usage: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # period -> calls, tokens, GB/100
    hours: int = 0
    tenant_id: int = 0
    sub_id: int = 0
    history_invoice_id: int | None = None
    history_billed: dict[str, int] = field(default_factory=dict)  # meter -> usage amount billed in December

    @property
    def slug(self) -> str:
        return f"{PREFIX}{self.i:05d}"

    def period(self, which: str) -> tuple[datetime, datetime]:
        start = datetime(2025, 1, self.anchor, tzinfo=UTC)
        if which == "H":
            return month_add(start, -1), start
        return start, month_add(start, 1)

    def window(self, which: str) -> tuple[datetime, datetime]:
        """Hours that hold usage: the period, from the tenant's creation on."""
        start, end = self.period(which)
        return max(start, self.created), end


def draw_population(n: int, seed: int, plans: dict[str, PlanInfo]) -> list[Spec]:
    rng = random.Random(seed)
    codes = list(PLAN_MIX)
    weights = [PLAN_MIX[c][0] for c in codes]

    def ratio(over_ok: bool) -> float:
        r = rng.random()
        if over_ok and r < 0.20:
            return 1 + rng.uniform(0.0005, 0.6)
        if r < 0.23:
            return 1.0
        return rng.uniform(0.03, 0.95)

    def usage(plan: PlanInfo, hours: int, over_ok: bool) -> tuple[int, int, int]:
        lim = plan.limits
        calls = max(hours, round((lim["api_calls"].included or 0) * ratio(over_ok)))
        tokens = max(calls * 50, round((lim["ai_tokens"].included or 0) * ratio(over_ok)))
        storage = max(1, round((lim["storage_gb"].included or 0) * 100 * ratio(over_ok)))
        return calls, tokens, storage

    specs = []
    for i in range(1, n + 1):
        code = rng.choices(codes, weights)[0]
        plan = plans[code]
        anchor = 1 + (i - 1) % 28
        jan = datetime(2025, 1, anchor, tzinfo=UTC)
        paid = code != "free"
        roll = rng.random()
        if paid and roll < 0.20:
            k = rng.randrange(12)
            first = month_add(jan, -k)
            spec = Spec(i, code, "yearly", "yearly", anchor, first, first, k)
        elif paid and roll < 0.23:
            created = jan + timedelta(hours=9)  # trial of 14 days ends inside January
            spec = Spec(i, code, "monthly", "trial", anchor, created, created + timedelta(days=14), 0)
        else:
            first = month_add(jan, -1 - rng.randrange(12))
            spec = Spec(i, code, "monthly", "monthly", anchor, first, first, 0)
            if paid and rng.random() < 0.02:
                spec.cancel_at = month_add(jan, 1)  # scheduled at the period end (the default)
        spec.hours = PLAN_MIX[code][1]
        if spec.kind != "trial" and not (spec.kind == "yearly" and spec.months_in == 0):
            spec.usage["H"] = usage(plan, spec.hours, over_ok=paid and spec.kind == "monthly")
        spec.usage["M"] = usage(plan, spec.hours, over_ok=paid)
        if rng.random() < 0.25:
            spec.tax_rate = rng.choice(TAX_RATES)
        if paid and rng.random() < 0.06:
            spec.coupon = rng.choice(list(COUPONS))
            fixed = COUPONS[spec.coupon][3]
            spec.periods_used = rng.randrange(6) if fixed is None else fixed
        if spec.kind == "monthly" and paid:
            roll = rng.random()
            if roll < 0.01:
                spec.late = True
                calls, _, storage = spec.usage["H"]
                spec.usage["H"] = (calls, round((plan.limits["ai_tokens"].included or 0) * 1.05), storage)
            elif roll < 0.03:
                spec.credit = rng.randint(500, 5_000)
        specs.append(spec)
    return specs


# --- the arithmetic, recomputed (independent of billing/rating.py) --------------------------


def fee_amount(spec: Spec, plan: PlanInfo, start: datetime, end: datetime) -> int | None:
    billable_start = max(start, spec.billing_starts)
    billable_end = min(end, spec.cancel_at or end)
    if billable_end <= billable_start:
        return None
    if spec.interval == "yearly":
        months = (start.year - spec.billing_starts.year) * 12 + start.month - spec.billing_starts.month
        return plan.price_yearly if months % 12 == 0 else None
    full = int((end - start).total_seconds())
    part = int((billable_end - billable_start).total_seconds())
    if part >= full:
        return plan.price_monthly
    fraction = (Decimal(part) / Decimal(full)).quantize(Decimal("0.000001"))
    return half_up(Decimal(plan.price_monthly) * fraction)


def usage_amount(limit: Limit, used: Decimal) -> int:
    if limit.included is None or limit.on_exceed != "overage" or used <= limit.included:
        return 0
    packages = math.ceil((used - limit.included) / Decimal(limit.size))
    return half_up(packages * limit.price * 100)


def expected_lines(
    spec: Spec,
    plan: PlanInfo,
    which: str,
    used: dict[str, Decimal],
    late: list[int],
    credit: int | None,
    partial_credits: bool = False,
) -> list[tuple[str, int]] | None:
    """(kind, amount) per line as BILLING.md says, or None when nothing is due (no invoice).
    `partial_credits`: a credit note bigger than the subtotal is deducted in part (as much as
    the subtotal allows) rather than left for later whole."""
    start, end = spec.period(which)
    lines: list[tuple[str, int]] = []
    fee = fee_amount(spec, plan, start, end)
    if fee is not None:
        lines.append(("base", fee))
    if min(end, spec.cancel_at or end) > max(start, spec.billing_starts):
        lines += [("usage", usage_amount(plan.limits[r], used[r])) for r in RESOURCES]
    lines += [("adjustment", owed) for owed in late]
    if which == "M" and spec.coupon:
        pct, off, duration, _ = COUPONS[spec.coupon]
        base = fee or 0
        if base > 0 and (duration is None or spec.periods_used < duration):
            cut = half_up(Decimal(base) * pct / 100) if pct is not None else min(off or 0, base)
            if cut > 0:
                lines.append(("discount", -cut))
    subtotal = sum(amount for _, amount in lines)
    if credit is not None and subtotal > 0:
        take = min(credit, subtotal) if partial_credits else credit if credit <= subtotal else 0
        if take:
            lines.append(("credit", -take))
            subtotal -= take
    if not any(amount for _, amount in lines):
        return None
    if spec.tax_rate > 0 and subtotal > 0:
        lines.append(("tax", half_up(Decimal(subtotal) * spec.tax_rate)))
    return lines


# --- writing it ----------------------------------------------------------------------------


def copy_rows(cursor: Any, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    def text(value: Any) -> str:
        return "\\N" if value is None else str(value).replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")

    buf = io.StringIO("".join("\t".join(text(v) for v in row) + "\n" for row in rows))
    cursor.cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buf)


def cleanup() -> dict[str, int]:
    """Delete every row this benchmark makes: tenants ibench-* and their rows everywhere. The
    rows pointing at their invoices, credit notes and subscriptions are found through the
    database's foreign keys, the tenant-keyed tables by their tenant_id column, so a table
    added later is covered too."""
    from django.db import connection, transaction

    removed: Counter[str] = Counter()
    with transaction.atomic(), connection.cursor() as cur:

        def referencing(table: str) -> list[tuple[str, str]]:
            cur.execute(
                "SELECT c.conrelid::regclass::text, a.attname FROM pg_constraint c JOIN pg_attribute a "
                "ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) "
                "WHERE c.contype = 'f' AND c.confrelid = %s::regclass AND c.conrelid <> c.confrelid",
                [table],
            )
            return cur.fetchall()

        def delete(table: str, column: str, ids: list[int]) -> None:
            if ids:
                cur.execute(f"DELETE FROM {table} WHERE {column} = ANY(%s)", [ids])
                removed[table] += cur.rowcount

        def select(sql: str, ids: list[int]) -> list[int]:
            cur.execute(sql, [ids])
            return [r[0] for r in cur.fetchall()]

        cur.execute("SELECT id FROM tenants_tenant WHERE slug LIKE %s", [PREFIX + "%"])
        tenants = [r[0] for r in cur.fetchall()]
        if tenants:
            invoices = select("SELECT id FROM billing_invoice WHERE tenant_id = ANY(%s)", tenants)
            notes = select("SELECT id FROM billing_creditnote WHERE invoice_id = ANY(%s)", invoices)
            subs = select("SELECT id FROM billing_subscription WHERE tenant_id = ANY(%s)", tenants)
            for table, column in referencing("billing_creditnote"):
                delete(table, column, notes)
            delete("billing_creditnote", "id", notes)
            for table, column in referencing("billing_invoice"):
                delete(table, column, invoices)
            delete("billing_invoice", "id", invoices)
            for table, column in referencing("billing_subscription"):
                delete(table, column, subs)
            cur.execute(
                "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND column_name = 'tenant_id' AND table_name <> 'tenants_tenant' ORDER BY 1"
            )
            for (table,) in cur.fetchall():
                delete(table, "tenant_id", tenants)
            delete("tenants_tenant", "id", tenants)
        cur.execute("DELETE FROM billing_coupon WHERE code LIKE %s", [PREFIX + "%"])
        removed["billing_coupon"] += cur.rowcount
    return {k: v for k, v in sorted(removed.items()) if v}


def history_invoices(s: Spec, plan: PlanInfo) -> list[tuple[str, datetime, datetime, list[tuple[str, int]]]]:
    """The invoices a tenant already has: December's (rated like any period, without coupon or
    credit) and, yearly, the first period's when that was before December."""
    out = []
    if "H" in s.usage:
        calls, tokens, storage = s.usage["H"]
        used = {"api_calls": Decimal(calls), "ai_tokens": Decimal(tokens), "storage_gb": Decimal(storage) / 100}
        lines = expected_lines(s, plan, "H", used, [], None)
        if lines is not None:
            out.append(("H", *s.period("H"), lines))
    if s.kind == "yearly" and s.months_in >= 2:
        lines = [("base", plan.price_yearly), ("usage", 0), ("usage", 0), ("usage", 0)]
        if s.tax_rate > 0:
            lines.append(("tax", half_up(plan.price_yearly * s.tax_rate)))
        out.append(("Y", s.billing_starts, month_add(s.billing_starts, 1), lines))
    return out


def build(specs: list[Spec], plans: dict[str, PlanInfo]) -> dict[str, Any]:
    """Write the population; returns counts. Rows in bulk: ORM bulk_create for the billing
    rows, COPY + INSERT … SELECT generate_series for the rollups."""
    from django.db import connection, transaction

    from billing.models import (
        BillingProfile,
        Coupon,
        CreditNote,
        Discount,
        Invoice,
        InvoiceLine,
        InvoiceStatus,
        Subscription,
        SubscriptionStatus,
    )
    from metering.models import UsageCursor
    from tenants.models import Tenant, TenantStatus

    counts: dict[str, Any] = {}
    with Timer() as t, transaction.atomic():
        tenants = Tenant.objects.bulk_create(
            [
                Tenant(
                    schema_name=spec.slug.replace("-", "_"),  # never created
                    name=f"Invoice bench {spec.i:05d}",
                    slug=spec.slug,
                    status=TenantStatus.ACTIVE,
                    plan_id=plans[spec.plan].id,
                    billing_interval=spec.interval,
                    trial_ends_at=spec.billing_starts if spec.kind == "trial" else None,
                )
                for spec in specs
            ],
            batch_size=2000,
        )
        for spec, tenant in zip(specs, tenants, strict=True):
            spec.tenant_id = tenant.pk
        with connection.cursor() as cur:  # created_at is auto_now_add: backdate it like provisioning would have
            cur.execute(
                "UPDATE tenants_tenant t SET created_at = v.c, status_changed_at = v.c "
                "FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, c) WHERE t.id = v.id",
                [[s.tenant_id for s in specs], [s.created for s in specs]],
            )
        BillingProfile.objects.bulk_create(
            [
                BillingProfile(tenant_id=s.tenant_id, tax_rate=s.tax_rate, billing_email=f"billing@{s.slug}.bench.test")
                for s in specs
            ],
            batch_size=2000,
        )
        subs = Subscription.objects.bulk_create(
            [
                Subscription(
                    tenant_id=s.tenant_id,
                    plan_id=plans[s.plan].id,
                    interval=s.interval,
                    status=SubscriptionStatus.ACTIVE,
                    started_at=s.created,
                    anchor_day=s.anchor,
                    billing_starts_at=s.billing_starts,
                    invoiced_through=s.period("M")[0],
                    cancel_at=s.cancel_at,
                )
                for s in specs
            ],
            batch_size=2000,
        )
        for spec, sub in zip(specs, subs, strict=True):
            spec.sub_id = sub.pk
        UsageCursor.objects.bulk_create(
            [UsageCursor(tenant_id=s.tenant_id, closed_through=s.period("M")[0]) for s in specs if "H" in s.usage]
        )
        coupons = {}
        for code, (pct, off, duration, _) in COUPONS.items():
            coupons[code] = Coupon.objects.create(
                code=code, name=code, percent_off=pct, amount_off=off, duration_periods=duration
            )
        Discount.objects.bulk_create(
            [
                Discount(
                    tenant_id=s.tenant_id, coupon=coupons[s.coupon], starts_at=s.created, periods_used=s.periods_used
                )
                for s in specs
                if s.coupon
            ]
        )
        # History: December's invoice (where something was due) and, for yearly subscriptions
        # further into their year, the invoice of their first period (the yearly fee). Paid.
        heads: list[tuple[Spec, Invoice]] = []
        bodies: list[list[InvoiceLine]] = []
        for s in specs:
            for which, start, end, spec_lines in history_invoices(s, plans[s.plan]):
                total = sum(a for _, a in spec_lines)
                tax = sum(a for k, a in spec_lines if k == "tax")
                heads.append(
                    (
                        s,
                        Invoice(
                            tenant_id=s.tenant_id,
                            subscription_id=s.sub_id,
                            kind="period",
                            number=f"IBENCH-{which}-{s.i:05d}",
                            status=InvoiceStatus.PAID,
                            period_start=start,
                            period_end=end,
                            currency="usd",
                            subtotal=total - tax,
                            tax=tax,
                            total=total,
                            finalized_at=end + timedelta(hours=1),
                            due_at=end + timedelta(days=14),
                            paid_at=end + timedelta(days=2),
                        ),
                    )
                )
                meters = iter(RESOURCES)
                lines = []
                for pos, (kind, amount) in enumerate(spec_lines, start=1):
                    meter = next(meters) if kind == "usage" else ""
                    if kind == "usage" and which == "H":
                        s.history_billed[meter] = amount
                    lines.append(
                        InvoiceLine(
                            position=pos,
                            kind=kind,
                            description=f"{kind} {meter}".strip(),
                            meter=meter,
                            amount=amount,
                            period_start=start if kind in ("base", "usage") else None,
                            period_end=end if kind in ("base", "usage") else None,
                        )
                    )
                bodies.append(lines)
        made = Invoice.objects.bulk_create([inv for _, inv in heads], batch_size=2000)
        all_lines = []
        for (spec, _), inv, lines in zip(heads, made, bodies, strict=True):
            if inv.period_start == spec.period("H")[0]:
                spec.history_invoice_id = inv.pk
            for line in lines:
                line.invoice_id = inv.pk
                all_lines.append(line)
        InvoiceLine.objects.bulk_create(all_lines, batch_size=5000)
        CreditNote.objects.bulk_create(
            [
                CreditNote(
                    number=f"IBENCH-CN-{s.i:05d}",
                    invoice_id=s.history_invoice_id,
                    amount=s.credit,
                    reason="Service credit (bench)",
                )
                for s in specs
                if s.credit and s.history_invoice_id
            ]
        )
        for s in specs:  # a credit needs an invoice to credit
            if s.credit and not s.history_invoice_id:
                s.credit = None
    counts["billing_rows_s"] = round(t.seconds, 1)
    counts["history_invoices"] = len(made)
    counts["history_invoice_lines"] = len(all_lines)
    say(f"tenants, subscriptions, profiles, {len(made)} history invoices in {t.seconds:.1f} s")

    with Timer() as t:
        rows = rollups(specs)
    counts.update(rows)
    counts["rollups_s"] = round(t.seconds, 1)
    return counts


def rollups(specs: list[Spec]) -> dict[str, int]:
    """Hourly rollups for each tenant's December (if any) and January, by SQL.

    Each period's totals are spread over `hours` distinct hours of the usage window, integer
    parts that add up exactly (calls·(j+1)/h − calls·j/h); one storage reading a day at
    03:00 rising to the period's value on the last day (the meter is `latest`)."""
    from django.db import connection, transaction

    from metering import latency

    rows = []
    for s in specs:
        for which, (calls, tokens, storage) in s.usage.items():
            start, end = s.window(which)
            rows.append((s.tenant_id, s.i, start.isoformat(), end.isoformat(), calls, tokens, storage, s.hours,
                         MODELS[s.plan]))  # fmt: skip
    written = {"meterhourly_rows": 0, "usagehourly_rows": 0}
    hist = f"array_fill(0::bigint, ARRAY[{latency.BUCKETS // 2}]) || ARRAY[h.calls] || " \
           f"array_fill(0::bigint, ARRAY[{latency.BUCKETS - latency.BUCKETS // 2 - 1}])"  # fmt: skip
    with connection.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE ibench_spec (tenant_id bigint, seq bigint, wstart timestamptz, wend timestamptz, "
            "calls bigint, tokens bigint, storage_c bigint, hours bigint, model text)"
        )
        copy_rows(cur, "ibench_spec", ["tenant_id", "seq", "wstart", "wend", "calls", "tokens", "storage_c", "hours",
                                       "model"], rows)  # fmt: skip
        ids = sorted({s.tenant_id for s in specs})
        chunk = 500
        for n in range(0, len(ids), chunk):
            lo, hi = ids[n], ids[min(n + chunk, len(ids)) - 1]
            with transaction.atomic():
                cur.execute(
                    "CREATE TEMP TABLE ibench_hours ON COMMIT DROP AS "
                    "SELECT s.tenant_id, s.seq, s.model, j, s.wstart + make_interval(hours => "
                    "  (j * s.hn / s.hours + s.seq %% greatest(1, s.hn / s.hours))::int) AS hour, "
                    "  s.calls * (j + 1) / s.hours - s.calls * j / s.hours AS calls, "
                    "  s.tokens * (j + 1) / s.hours - s.tokens * j / s.hours AS tokens "
                    "FROM (SELECT *, (extract(epoch FROM wend - wstart) / 3600)::bigint AS hn FROM ibench_spec "
                    "      WHERE tenant_id BETWEEN %s AND %s) s, generate_series(0, s.hours - 1) AS j",
                    [lo, hi],
                )
                cur.execute(
                    "INSERT INTO metering_meterhourly (tenant_id, hour, meter_id, value, last_at) "
                    "SELECT h.tenant_id, h.hour, m.id, CASE m.code WHEN 'api_calls' THEN h.calls "
                    "  WHEN 'ai_tokens' THEN h.tokens WHEN 'input_tokens' THEN h.tokens * 4 / 5 "
                    "  ELSE h.tokens - h.tokens * 4 / 5 END, h.hour + interval '50 minutes' "
                    "FROM ibench_hours h CROSS JOIN metering_meter m WHERE m.code = ANY(%s)",
                    [list(QUERY_METERS)],
                )
                written["meterhourly_rows"] += cur.rowcount
                cur.execute(
                    "INSERT INTO metering_usagehourly (tenant_id, hour, event_type, model, department, events, "
                    "input_tokens, output_tokens, cost, unpriced_events, late_events, latency_hist) "
                    "SELECT h.tenant_id, h.hour, 'query', h.model, "
                    "(ARRAY['support', 'sales', 'engineering', 'legal', 'finance'])[1 + (h.seq + h.j) % 5], "
                    f"h.calls, h.tokens * 4 / 5, h.tokens - h.tokens * 4 / 5, h.tokens * 0.0000025, 0, 0, {hist} "
                    "FROM ibench_hours h"
                )
                written["usagehourly_rows"] += cur.rowcount
                cur.execute(
                    "CREATE TEMP TABLE ibench_storage ON COMMIT DROP AS "
                    "SELECT s.tenant_id, s.wstart + make_interval(days => d::int, hours => 3) AS hour, "
                    "  (s.storage_c * (9 * s.nd + d + 1) / (10 * s.nd))::numeric / 100 AS value "
                    "FROM (SELECT *, (extract(epoch FROM wend - wstart) / 86400)::bigint AS nd FROM ibench_spec "
                    "      WHERE tenant_id BETWEEN %s AND %s) s, generate_series(0, s.nd - 1) AS d",
                    [lo, hi],
                )
                cur.execute(
                    "INSERT INTO metering_meterhourly (tenant_id, hour, meter_id, value, last_at) "
                    "SELECT st.tenant_id, st.hour, m.id, st.value, st.hour + interval '10 minutes' "
                    "FROM ibench_storage st, metering_meter m WHERE m.code = 'storage_gb'"
                )
                written["meterhourly_rows"] += cur.rowcount
                cur.execute(
                    "INSERT INTO metering_usagehourly (tenant_id, hour, event_type, model, department, events, "
                    "input_tokens, output_tokens, cost, unpriced_events, late_events, latency_hist) "
                    "SELECT tenant_id, hour, 'storage', '', '', 1, 0, 0, 0, 0, 0, '{}' FROM ibench_storage"
                )
                written["usagehourly_rows"] += cur.rowcount
            if (n // chunk) % 4 == 3 or n + chunk >= len(ids):
                say(f"  rollups for {min(n + chunk, len(ids))}/{len(ids)} tenants: {written}")
        cur.execute("DROP TABLE ibench_spec")
        for table in ANALYZED:
            cur.execute(f"ANALYZE {table}")
    return written


def late_events(specs: list[Spec]) -> int:
    """One more December query event for each `late` tenant, through the real ingest, received
    two days after December was invoiced (the usage cursor stands at its end): flagged late."""
    from metering.ledger import events_record

    late = 0
    for s in specs:
        if not s.late:
            continue
        start, end = s.period("H")
        event = {
            "id": f"ibench-late-{s.i}",
            "tenant": s.slug,
            "type": "query",
            "timestamp": (start + timedelta(days=2, hours=10, minutes=17)).isoformat(),
            "properties": {"model": MODELS[s.plan], "input_tokens": LATE_TOKENS[0],
                           "output_tokens": LATE_TOKENS[1], "department": "support"},
        }  # fmt: skip
        result = events_record(raw_events=[event], now=end + timedelta(days=2))
        if result.rejected:
            raise SystemExit(f"late event rejected: {result.results}")
        late += sum(1 for r in result.results if r.get("late"))
    return late


def window_usage(specs: list[Spec], which: str) -> dict[int, dict[str, Decimal]]:
    """What the rollups hold for each tenant's billable part of the period (read back, so the
    expectation covers prorated windows and late events too)."""
    from django.db import connection

    sel = [s for s in specs if which in s.usage]
    ids = [s.tenant_id for s in sel]
    starts = [max(s.period(which)[0], s.billing_starts) for s in sel]
    ends = [min(s.period(which)[1], s.cancel_at or s.period(which)[1]) for s in sel]
    used: dict[int, dict[str, Decimal]] = defaultdict(lambda: dict.fromkeys(RESOURCES, Decimal(0)))
    windows = "unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS w(tid, ws, we)"
    with connection.cursor() as cur:
        cur.execute(
            "SELECT w.tid, me.code, sum(m.value) FROM " + windows + " JOIN metering_meterhourly m "
            "ON m.tenant_id = w.tid AND m.hour >= w.ws AND m.hour < w.we JOIN metering_meter me ON me.id = m.meter_id "
            "WHERE me.code IN ('api_calls', 'ai_tokens') GROUP BY 1, 2",
            [ids, starts, ends],
        )
        for tid, code, value in cur.fetchall():
            used[tid][code] = value
        cur.execute(
            "SELECT DISTINCT ON (w.tid) w.tid, m.value FROM " + windows + " JOIN metering_meterhourly m "
            "ON m.tenant_id = w.tid AND m.hour >= w.ws AND m.hour < w.we JOIN metering_meter me ON me.id = m.meter_id "
            "WHERE me.code = 'storage_gb' ORDER BY w.tid, m.last_at DESC",
            [ids, starts, ends],
        )
        for tid, value in cur.fetchall():
            used[tid]["storage_gb"] = value
    return used


# --- measuring -----------------------------------------------------------------------------


def statement_label(sql: str) -> str:
    words = sql.lstrip().split(None, 1)
    verb = words[0].upper() if words else "?"
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK"):
        return "SAVEPOINT/RELEASE"
    match = re.search(r'\b(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', sql, re.IGNORECASE)
    return f"{verb} {match.group(1) if match else '?'}"


def query_sample(sub_ids: list[int]) -> dict[str, Any]:
    """Close `sub_ids` under CaptureQueriesContext inside a transaction that is rolled back."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from billing.invoicing import subscription_close_periods

    per_sub: list[int] = []
    savepoints: list[int] = []
    labels: Counter[str] = Counter()
    drafted = 0
    with transaction.atomic():
        for sub_id in sub_ids:
            with CaptureQueriesContext(connection) as ctx:
                made = subscription_close_periods(subscription_id=sub_id, now=NOW)
            drafted += len(made or [])
            these = [statement_label(q["sql"]) for q in ctx.captured_queries]
            per_sub.append(sum(1 for x in these if x != "SAVEPOINT/RELEASE"))
            savepoints.append(sum(1 for x in these if x == "SAVEPOINT/RELEASE"))
            labels.update(x for x in these if x != "SAVEPOINT/RELEASE")
        transaction.set_rollback(True)
    n = len(sub_ids)
    return {
        "subscriptions": n,
        "drafted_in_sample": drafted,
        "statements_per_subscription": {
            "mean": round(sum(per_sub) / n, 2),
            "min": min(per_sub),
            "max": max(per_sub),
        },  # fmt: skip
        "savepoint_statements_per_subscription": round(sum(savepoints) / n, 2),
        "by_statement_per_subscription": {k: round(v / n, 2) for k, v in labels.most_common()},
        "note": "rolled back afterwards; in the sample each period's transaction is a savepoint (the real "
        "job: BEGIN/COMMIT, not counted), so savepoint statements are counted apart",
    }


class SqlMeter:
    """connection.execute_wrapper: how many statements, and the time spent inside execute
    (round trip + server; psycopg2 fetches the rows during execute)."""

    def __init__(self) -> None:
        self.statements = 0
        self.seconds = 0.0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.statements += 1


def measured_run(
    profile: bool, batch: int
) -> tuple[Any, float, list[tuple[int, float, int]], SqlMeter, dict[str, Any]]:
    from django.db import connection

    from billing import invoicing

    original = invoicing.subscription_close_periods
    per_sub: list[tuple[int, float, int]] = []  # subscription id, seconds, invoices drafted

    def timed(**kwargs: Any) -> Any:
        started = time.perf_counter()
        made = None
        try:
            made = original(**kwargs)
            return made
        finally:
            per_sub.append((kwargs["subscription_id"], time.perf_counter() - started, len(made or [])))

    meter = SqlMeter()
    profiler = cProfile.Profile() if profile else None
    invoicing.subscription_close_periods = timed  # type: ignore[assignment]
    try:
        with CpuSampler({"python": self_pids, "postgres": postgres_pids}) as cpu, connection.execute_wrapper(meter):
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            result = invoicing.invoices_close_due(now=NOW, batch=batch)
            if profiler:
                profiler.disable()
            wall = time.perf_counter() - started
    finally:
        invoicing.subscription_close_periods = original  # type: ignore[assignment]
    if profiler:
        RESULTS.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(RESULTS / "invoicing.prof")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return result, wall, per_sub, meter, cpu.result


# --- checking ------------------------------------------------------------------------------


def verify(
    specs: list[Spec], plans: dict[str, PlanInfo], partial_credits: bool
) -> tuple[dict[str, bool], dict[str, Any]]:
    from billing.models import Discount, Invoice, InvoiceLine, Subscription
    from metering.models import UsageCursor

    used_m = window_usage(specs, "M")
    used_h = window_usage([s for s in specs if s.late], "H")
    # the generator itself: full-window January totals read back == drawn
    generator_ok = all(
        used_m[s.tenant_id] == {"api_calls": Decimal(s.usage["M"][0]), "ai_tokens": Decimal(s.usage["M"][1]),
                                "storage_gb": Decimal(s.usage["M"][2]) / 100}
        for s in specs if s.kind != "trial"
    )  # fmt: skip
    expected: dict[int, list[tuple[str, int]]] = {}
    for s in specs:
        plan = plans[s.plan]
        late = []
        if s.late:
            for r in RESOURCES:
                owed = usage_amount(plan.limits[r], used_h[s.tenant_id][r]) - s.history_billed.get(r, 0)
                if owed > 0:
                    late.append(owed)
        lines = expected_lines(s, plan, "M", used_m[s.tenant_id], late, s.credit, partial_credits)
        if lines is not None:
            expected[s.tenant_id] = lines

    by_tenant = {s.tenant_id: s for s in specs}
    ids = list(by_tenant)
    drafts = list(
        Invoice.objects.filter(tenant_id__in=ids, status="draft").values_list(
            "id", "tenant_id", "kind", "period_start", "period_end", "subtotal", "tax", "total", "swing_flag",
            "subscription_id",
        )
    )  # fmt: skip
    lines_of: dict[int, list[tuple[str, int]]] = defaultdict(list)
    rows = InvoiceLine.objects.filter(invoice__status="draft", invoice__tenant_id__in=ids).order_by(
        "invoice_id", "position"
    )
    for invoice_id, kind, amount in rows.values_list("invoice_id", "kind", "amount"):
        lines_of[invoice_id].append((kind, amount))
    per_tenant = Counter(d[1] for d in drafts)  # this run made January's only: one per tenant at most
    got = {d[1]: d for d in drafts}
    mismatches = []
    for tid, want in expected.items():
        d = got.get(tid)
        have = lines_of.get(d[0]) if d else None
        if have != want:
            mismatches.append({"slug": by_tenant[tid].slug, "expected": want, "drafted": have})
    unexpected = [by_tenant[tid].slug for tid in got if tid not in expected]
    ok_rows = all(
        d[2] == "period"
        and (d[3], d[4]) == by_tenant[d[1]].period("M")
        and d[5] + d[6] == d[7]
        and sum(a for _, a in lines_of[d[0]]) == d[7]
        and d[9] == by_tenant[d[1]].sub_id
        for d in drafts
    )
    through = dict(Subscription.objects.filter(tenant_id__in=ids).values_list("tenant_id", "invoiced_through"))
    cursors_moved = all(through.get(s.tenant_id) == s.period("M")[1] for s in specs)
    usage_cursors = dict(UsageCursor.objects.filter(tenant_id__in=ids).values_list("tenant_id", "closed_through"))
    discount_lines = {tid for tid, lines in expected.items() if any(k == "discount" for k, _ in lines)}
    discounts_counted = all(
        used == by_tenant[tid].periods_used + (1 if tid in discount_lines else 0)
        for tid, used in Discount.objects.filter(tenant_id__in=ids).values_list("tenant_id", "periods_used")
    )
    kinds = Counter(k for lines in expected.values() for k, a in lines if a)
    checks = {
        "rollups_as_drawn": generator_ok,
        "one_draft_per_tenant_period": all(n == 1 for n in per_tenant.values()),
        "drafts_exactly_where_due": set(got) == set(expected),
        "lines_and_amounts_as_expected": not mismatches,
        "totals_consistent": ok_rows,
        "every_subscription_cursor_moved": cursors_moved,
        "usage_cursors_moved": all(usage_cursors.get(s.tenant_id) == s.period("M")[1] for s in specs),
        "coupon_periods_counted": discounts_counted,
    }
    facts = {
        "expected_invoices": len(expected),
        "drafted_invoices": len(drafts),
        "nothing_due_no_invoice": len(specs) - len(expected),
        "invoices_with_nonzero": dict(kinds),
        "prorated_fee": sum(1 for s in specs if s.kind == "trial" and s.tenant_id in expected),
        "yearly_fee": sum(1 for s in specs if s.kind == "yearly" and s.months_in == 0),
        "swing_flagged": sum(1 for d in drafts if d[8]),
        "total_drafted_usd": round(sum(d[7] for d in drafts) / 100, 2),
        "mismatches_first": mismatches[:5],
        "unexpected_first": unexpected[:5],
    }
    return checks, facts


def digest(tenant_ids: list[int], dump: str | None = None) -> str:
    """sha256 of every drafted invoice and line (ids left out): same population, same digest.
    `dump`: also write them to that file as JSON (to diff two runs)."""
    from billing.models import Invoice, InvoiceLine

    heads = sorted(
        Invoice.objects.filter(tenant_id__in=tenant_ids, status="draft").values_list(
            "tenant__slug", "kind", "period_start", "period_end", "currency", "subtotal", "tax", "total",
            "previous_total", "swing_flag",
        )
    )  # fmt: skip
    lines = sorted(
        InvoiceLine.objects.filter(invoice__tenant_id__in=tenant_ids, invoice__status="draft").values_list(
            "invoice__tenant__slug", "position", "kind", "description", "meter", "quantity", "unit_price", "amount",
            "period_start", "period_end", "details", "usage_query",
        ),
        key=lambda r: (r[0], r[1]),
    )  # fmt: skip
    blob = json.dumps([heads, lines], default=str, sort_keys=True)
    if dump:
        Path(dump).write_text(json.dumps([heads, lines], default=str, sort_keys=True, indent=1))
    return hashlib.sha256(blob.encode()).hexdigest()


# --- main ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, default=10_000, help="tenant subscriptions (10000)")
    parser.add_argument("--seed", type=int, default=5, help="population seed (5)")
    parser.add_argument("--sample", type=int, default=50, help="subscriptions in the query sample (50)")
    parser.add_argument("--batch", type=int, default=500, help="the job's batch size (its default, 500)")
    parser.add_argument("--profile", action="store_true", help="cProfile the measured run (slower)")
    parser.add_argument("--dump", metavar="FILE", help="write the drafted invoices as JSON (to diff runs)")
    parser.add_argument("--keep", action="store_true", help="leave the population (breaks bench/migrate.py!)")
    args = parser.parse_args()

    django_setup()
    from django.core.management import call_command
    from django.db import connection

    from billing.invoicing import invoices_close_due
    from billing.models import Invoice, Subscription
    from tenants.models import Plan, PlanLimit

    # Leftovers of a crashed run first: bootstrap's migrate_tenants fails on tenant rows
    # without a schema. (A fresh database has no tables yet: nothing to remove.)
    if "tenants_tenant" in connection.introspection.table_names():
        with Timer() as t:
            left = cleanup()
        if left:
            say(f"removed leftovers of an earlier run in {t.seconds:.1f} s: {left}")
    with Timer() as boot:
        call_command("bootstrap", verbosity=0)
    say(f"bootstrap {boot.seconds:.1f} s")
    foreign = Subscription.objects.filter(invoiced_through__lt=NOW).exclude(tenant__slug__startswith=PREFIX).count()
    if foreign:
        say(f"{foreign} other subscriptions would be due at {NOW:%Y-%m-%d %H:%M}: the job would invoice them too")
        return 2

    plans = {}
    for plan in Plan.objects.filter(code__in=list(PLAN_MIX)):
        limits = {
            pl.resource: Limit(pl.included, pl.on_exceed, pl.overage_package_size, pl.overage_package_price)
            for pl in PlanLimit.objects.filter(plan=plan)
        }
        plans[plan.code] = PlanInfo(plan.pk, plan.code, plan.price_monthly, plan.price_yearly, limits)
    specs = draw_population(args.subscriptions, args.seed, plans)
    # Credit notes: deducted whole while they fit (BILLING.md), or in part as far as the
    # subtotal goes once credits are recorded as applications (billing.models.CreditApplication).
    import billing.models

    partial_credits = hasattr(billing.models, "CreditApplication")
    mix = {
        "plans": dict(Counter(s.plan for s in specs)),
        "kinds": dict(Counter(s.kind for s in specs)),
        "yearly_fee_due": sum(1 for s in specs if s.kind == "yearly" and s.months_in == 0),
        "cancel_scheduled": sum(1 for s in specs if s.cancel_at),
        "taxed": sum(1 for s in specs if s.tax_rate),
        "coupons": dict(Counter(s.coupon for s in specs if s.coupon)),
        "credit_notes": sum(1 for s in specs if s.credit),
        "late": sum(1 for s in specs if s.late),
        "over_included_jan": {
            r: sum(
                1
                for s in specs
                if plans[s.plan].limits[r].included is not None
                and s.usage["M"][k] / (100 if r == "storage_gb" else 1) > plans[s.plan].limits[r].included
            )
            for k, r in ((0, "api_calls"), (1, "ai_tokens"), (2, "storage_gb"))
        },  # fmt: skip
    }
    say(f"population of {len(specs)}: {mix}")

    ok = False
    data: dict[str, Any] = {}
    try:
        with Timer() as setup:
            counts = build(specs, plans)
            with Timer() as t:
                counts["late_events_flagged"] = late_events(specs)
            counts["late_events_s"] = round(t.seconds, 1)
        say(f"population written in {setup.seconds:.1f} s: {counts}")
        due = list(Subscription.objects.filter(invoiced_through__lt=NOW).order_by("pk").values_list("pk", flat=True))
        step = max(1, len(due) // max(1, args.sample))
        sample = query_sample(due[::step][: args.sample]) if args.sample else None
        if sample:
            say(f"query sample: {sample['statements_per_subscription']} statements per subscription; "
                f"{sample['by_statement_per_subscription']}")  # fmt: skip

        busy_before = wait_quiet(say=say)
        result, wall, per_sub, meter, cpu = measured_run(args.profile, args.batch)
        drafted = result.drafted
        late_subs = {s.sub_id for s in specs if s.late}
        cases: dict[str, list[float]] = defaultdict(list)
        for sub_id, seconds, n in per_sub:
            cases["late usage, drafted" if sub_id in late_subs else "drafted" if n else "nothing due"].append(seconds)
        by_case = {case: summary(times) for case, times in sorted(cases.items())}
        say(f"per subscription: {by_case}")
        say(
            f"closed {len(per_sub)} subscriptions in {wall:.1f} s: {result} — "
            f"{wall / max(1, len(per_sub)) * 1000:.2f} ms per subscription, "
            f"{wall / max(1, drafted) * 1000:.2f} ms per invoice; {meter.statements} SQL statements "
            f"({meter.statements / max(1, len(per_sub)):.1f} per subscription), {meter.seconds:.1f} s inside them; "
            f"cpu {cpu}"
        )

        with Timer() as vt:
            checks, facts = verify(specs, plans, partial_credits)
            run_digest = digest([s.tenant_id for s in specs], args.dump)
        with Timer() as again:
            second = invoices_close_due(now=NOW)
        drafts_after = Invoice.objects.filter(tenant__slug__startswith=PREFIX, status="draft").count()
        checks["second_run_drafts_nothing"] = (second.drafted, second.failed) == (0, 0) and drafts_after == drafted
        checks["no_failures"] = result.failed == 0 and result.skipped == 0
        checks["drafted_count_matches"] = drafted == facts["drafted_invoices"]
        say(f"verified in {vt.seconds:.1f} s: {checks}")
        say(f"facts: {facts}")
        say(f"second run: {second} in {again.seconds:.2f} s; digest {run_digest[:16]}…")

        met = wall < TARGET_S
        ok = met and all(checks.values())
        say(
            f"invoicing {len(per_sub)} subscriptions: {wall:.1f} s for {drafted} drafts "
            f"(target < {TARGET_S:.0f} s for 10,000: {'met' if met else 'MISSED'}"
            f"{'' if args.subscriptions == 10_000 else f'; measured with {args.subscriptions}'})"
        )
        data = {
            "how": "billing.invoicing.invoices_close_due(now=2025-02-28T00:05Z) in-process (what the daily "
            "billing.close_periods task runs), over tenant rows without schemas (billing reads only public "
            "tables); population made by bulk SQL and deleted again afterwards",
            "postgres": postgres_version(),
            "subscriptions": args.subscriptions,
            "seed": args.seed,
            "job_now": NOW.isoformat(),
            "credit_rule": "partial" if partial_credits else "whole",
            "population": mix,
            "setup": {**counts, "total_s": round(setup.seconds, 1)},
            "query_sample": sample,
            "other_cores_busy_before": busy_before,
            "close": {
                "wall_s": round(wall, 2),
                "subscriptions_processed": len(per_sub),
                "drafted": drafted,
                "skipped": result.skipped,
                "failed": result.failed,
                "per_subscription_s": summary([t for _, t, _ in per_sub]) if per_sub else None,
                "per_subscription_s_by_case": by_case,
                "per_invoice_ms": round(wall / max(1, drafted) * 1000, 2),
                "sql_statements": meter.statements,
                "sql_statements_per_subscription": round(meter.statements / max(1, len(per_sub)), 2),
                "sql_statements_per_invoice": round(meter.statements / max(1, drafted), 2),
                "sql_execute_s": round(meter.seconds, 2),
                "cpu": cpu,
                "profiled": args.profile,
            },
            "second_run": {"wall_s": round(again.seconds, 2), "drafted": second.drafted, "failed": second.failed},
            "checks": checks,
            "facts": facts,
            "digest": run_digest,
            "target": {"wall_s": TARGET_S, "for_subscriptions": 10_000, "met": met},
            "passed": ok,
        }
    finally:
        if args.keep:
            say("--keep: the ibench-* population stays (the next run removes it)")
        else:
            with Timer() as t:
                removed = cleanup()
            say(f"deleted what the run made in {t.seconds:.1f} s: {removed}")
            if data:
                data["cleanup"] = {"s": round(t.seconds, 1), "rows": removed}
    if data:
        write_result("invoicing", data)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
