"""Business metrics, computed from the tenants' plan and status history (TenantEvent).

Each customer tenant's state — status, plan, billing interval — is known at any instant:
start from the tenant row as it is now and undo, newest first, every recorded change
(status changes carry {"from", "to"}; `plan_changed` and `interval_changed` too). A state's
MRR is `tenants.revenue.tenant_mrr_minor` (paying statuses only; yearly / 12). A period
[start, end) compares each tenant's MRR just before `start` and just before `end`. The
definitions are written out in docs/METRICS.md; plan prices are today's.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import Q

from operations.selectors import month_bounds, tracked_cost_by_tenant, tracked_cost_by_tenant_month
from tenants.models import Plan, Tenant, TenantEvent, TenantStatus
from tenants.revenue import PAYING_STATUSES, tenant_mrr_minor

CURRENCY = "usd"
ACTIVE_STATUSES = frozenset({TenantStatus.TRIALING, TenantStatus.ACTIVE, TenantStatus.PAST_DUE})
PROBE_SLUG = "readiness-probe"  # the readiness audit's own tenant is not a customer in the numbers


@dataclass(frozen=True)
class State:
    status: str
    plan_id: int | None
    interval: str


@dataclass
class Timeline:
    tenant_id: int
    slug: str
    created_at: datetime
    starts: list[datetime] = field(default_factory=list)  # ascending; states[i] holds from starts[i]
    states: list[State] = field(default_factory=list)
    # Status transitions (at, from, to), for trial conversion.
    transitions: list[tuple[datetime, str, str]] = field(default_factory=list)

    def before(self, at: datetime) -> State | None:
        """The state in force just before `at` (a change exactly at `at` is not yet in it)."""
        index = bisect_left(self.starts, at) - 1
        return self.states[index] if index >= 0 else None

    def segments(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime, State]]:
        """(from, to, state) pieces of [start, end) the tenant existed in."""
        pieces = []
        for i, state in enumerate(self.states):
            seg_start = self.starts[i]
            seg_end = self.starts[i + 1] if i + 1 < len(self.starts) else end
            lo, hi = max(seg_start, start), min(seg_end, end)
            if lo < hi:
                pieces.append((lo, hi, state))
        return pieces


class Pricing:
    """MRR of a state with today's plans (the same rule as tenants.revenue)."""

    def __init__(self) -> None:
        self.plans = {plan.pk: plan for plan in Plan.objects.all()}
        self.by_code = {plan.code: plan.pk for plan in self.plans.values()}

    def mrr(self, state: State | None) -> int:
        if state is None or state.plan_id is None or state.status not in PAYING_STATUSES:
            return 0
        plan = self.plans.get(state.plan_id)
        if plan is None or plan.currency.lower() != CURRENCY:
            return 0
        return tenant_mrr_minor(tenant=Tenant(status=state.status, plan=plan, billing_interval=state.interval))


def timelines(*, pricing: Pricing) -> dict[int, Timeline]:
    """Every customer tenant's history of states (the readiness probe tenant left out)."""
    tenants = list(
        Tenant.objects.customers()
        .exclude(slug=PROBE_SLUG)
        .values_list("pk", "slug", "created_at", "status", "plan_id", "billing_interval")
    )
    events: dict[int, list[tuple[datetime, str, dict[str, Any]]]] = defaultdict(list)
    rows = (
        TenantEvent.objects.filter(tenant_id__in=[t[0] for t in tenants])
        .filter(Q(kind__in=("plan_changed", "interval_changed")) | Q(details__has_keys=["from", "to"]))
        .order_by("tenant_id", "created_at", "id")
        .values_list("tenant_id", "created_at", "kind", "details")
    )
    for tenant_id, at, kind, details in rows:
        events[tenant_id].append((at, kind, details if isinstance(details, dict) else {}))
    statuses = set(TenantStatus.values)
    result: dict[int, Timeline] = {}
    for pk, slug, created_at, status, plan_id, interval in tenants:
        state = State(status, plan_id, interval)
        starts: list[datetime] = []
        states: list[State] = []
        transitions: list[tuple[datetime, str, str]] = []
        for at, kind, details in reversed(events.get(pk, [])):
            if at <= created_at:
                continue
            before = state
            if kind == "plan_changed":
                code = details.get("from")
                before = State(state.status, pricing.by_code.get(code) if code else None, state.interval)
            elif kind == "interval_changed" and isinstance(details.get("from"), str):
                before = State(state.status, state.plan_id, details["from"])
            elif details.get("from") in statuses and details.get("to") in statuses:
                before = State(details["from"], state.plan_id, state.interval)
                transitions.append((at, details["from"], details["to"]))
            else:
                continue
            starts.append(at)
            states.append(state)
            state = before
        starts.append(created_at)
        states.append(state)
        timeline = Timeline(tenant_id=pk, slug=slug, created_at=created_at)
        timeline.starts, timeline.states = starts[::-1], states[::-1]
        timeline.transitions = transitions[::-1]
        result[pk] = timeline
    return result


def _rate(numerator: Decimal | int, denominator: Decimal | int) -> Decimal | None:
    if not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def _month_seconds(at: datetime) -> float:
    start, end = month_bounds(at.date())
    return (end - start).total_seconds()


@dataclass
class PeriodMetrics:
    start: datetime
    end: datetime
    mrr_start: int = 0
    mrr: int = 0  # at the end
    paying_start: int = 0
    paying: int = 0
    active: int = 0
    new: int = 0
    reactivation: int = 0
    expansion: int = 0
    contraction: int = 0
    churned: int = 0
    churned_logos: int = 0
    trials_ended: int = 0
    trials_converted: int = 0
    by_plan: list[dict[str, Any]] = field(default_factory=list)
    by_tenant: list[dict[str, Any]] = field(default_factory=list)

    @property
    def arr(self) -> int:
        return self.mrr * 12

    @property
    def arpu(self) -> int | None:
        if not self.paying:
            return None
        return int((Decimal(self.mrr) / self.paying).quantize(Decimal(1), rounding=ROUND_HALF_UP))

    @property
    def logo_churn_rate(self) -> Decimal | None:
        return _rate(self.churned_logos, self.paying_start)

    @property
    def revenue_churn_rate(self) -> Decimal | None:
        return _rate(self.churned + self.contraction, self.mrr_start)

    @property
    def net_revenue_churn_rate(self) -> Decimal | None:
        return _rate(self.churned + self.contraction - self.expansion, self.mrr_start)

    @property
    def trial_conversion_rate(self) -> Decimal | None:
        return _rate(self.trials_converted, self.trials_ended)

    def as_row(self) -> dict[str, Any]:
        return {
            "start": self.start.date().isoformat(),
            "end": self.end.date().isoformat(),
            "mrr": self.mrr,
            "arr": self.arr,
            "new_mrr": self.new,
            "reactivation_mrr": self.reactivation,
            "expansion_mrr": self.expansion,
            "contraction_mrr": self.contraction,
            "churned_mrr": self.churned,
            "logo_churn_rate": self.logo_churn_rate,
            "revenue_churn_rate": self.revenue_churn_rate,
            "net_revenue_churn_rate": self.net_revenue_churn_rate,
            "arpu": self.arpu,
            "paying_tenants": self.paying,
            "active_tenants": self.active,
            "trials_ended": self.trials_ended,
            "trials_converted": self.trials_converted,
            "trial_conversion_rate": self.trial_conversion_rate,
        }


def period_metrics(
    *,
    start: datetime,
    end: datetime,
    pricing: Pricing | None = None,
    lines: dict[int, Timeline] | None = None,
    costs: dict[int, Decimal] | None = None,
) -> PeriodMetrics:
    """Metrics of [start, end). Revenue and gross margin need the period inside one calendar
    month (revenue is that month's MRR, time-weighted)."""
    pricing = pricing or Pricing()
    lines = lines if lines is not None else timelines(pricing=pricing)
    out = PeriodMetrics(start=start, end=end)
    month_seconds = _month_seconds(start)
    costs = costs if costs is not None else tracked_cost_by_tenant(start=start, end=end)
    plans: dict[int | None, dict[str, Any]] = {}
    for timeline in lines.values():
        opening = pricing.mrr(timeline.before(start))
        closing_state = timeline.before(end)
        closing = pricing.mrr(closing_state)
        out.mrr_start += opening
        out.mrr += closing
        out.paying_start += opening > 0
        out.paying += closing > 0
        if opening == 0 and closing > 0:
            paid_before = any(
                pricing.mrr(state) > 0 for at, state in zip(timeline.starts, timeline.states, strict=True) if at < start
            )
            if paid_before:
                out.reactivation += closing
            else:
                out.new += closing
        elif opening > 0 and closing == 0:
            out.churned += opening
            out.churned_logos += 1
        elif closing > opening:
            out.expansion += closing - opening
        else:
            out.contraction += opening - closing
        for at, before, after in timeline.transitions:
            if start <= at < end and before == TenantStatus.TRIALING:
                out.trials_ended += 1
                out.trials_converted += after in PAYING_STATUSES
        if closing_state is None:
            continue  # created after the period
        revenue = sum(
            (Decimal(pricing.mrr(state)) * Decimal((hi - lo).total_seconds()) / Decimal(month_seconds))
            for lo, hi, state in timeline.segments(start, end)
        )
        revenue = Decimal(revenue).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)  # minor units, 2 places
        cost = costs.get(timeline.tenant_id, Decimal(0))
        active = closing_state.status in ACTIVE_STATUSES
        out.active += active
        plan = pricing.plans.get(closing_state.plan_id) if closing_state.plan_id else None
        group = plans.setdefault(
            closing_state.plan_id,
            {
                "plan": plan.code if plan else "(none)",
                "name": plan.name if plan else "No plan",
                "active": 0,
                "trialing": 0,
                "paying": 0,
                "mrr": 0,
                "revenue": Decimal(0),
                "tracked_cost": Decimal(0),
            },
        )
        group["active"] += active
        group["trialing"] += closing_state.status == TenantStatus.TRIALING
        group["paying"] += closing > 0
        group["mrr"] += closing
        group["revenue"] += revenue
        group["tracked_cost"] += cost
        if revenue or cost or active:
            row = {"tenant_id": timeline.tenant_id, "tenant": timeline.slug, "plan": group["plan"]}
            out.by_tenant.append(_margin_row({**row, "revenue": revenue, "tracked_cost": cost}))
    sort_key = {pk: (p.sort_order, p.price_monthly) for pk, p in pricing.plans.items()}
    for pk in sorted(plans, key=lambda pk: sort_key.get(pk, (10**9, 0)) if pk else (10**9 + 1, 0)):
        out.by_plan.append(_margin_row(plans[pk]))
    out.by_tenant.sort(key=lambda row: row["gross_margin"])
    return out


def _margin_row(row: dict[str, Any]) -> dict[str, Any]:
    """Adds gross margin = revenue − tracked cost, in major units (USD), and its percentage."""
    revenue = (Decimal(row["revenue"]) / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    cost = Decimal(row["tracked_cost"]).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    margin = revenue - cost
    return {
        **row,
        "revenue": revenue,
        "tracked_cost": cost,
        "gross_margin": margin,
        "gross_margin_pct": _rate(margin * 100, revenue) if revenue else None,
    }


def months_metrics(*, months: list[date], now: datetime) -> list[PeriodMetrics]:
    """Calendar months (first days, oldest first); the current one runs to `now` (month to
    date). One pass over the history and one grouped cost query for all of them."""
    pricing = Pricing()
    lines = timelines(pricing=pricing)
    first, _ = month_bounds(months[0])
    _, last = month_bounds(months[-1])
    costs = tracked_cost_by_tenant_month(start=first, end=min(last, now))
    out = []
    for month in months:
        start, end = month_bounds(month)
        if now < end:
            end = max(now, start + timedelta(seconds=1))
        out.append(period_metrics(start=start, end=end, pricing=pricing, lines=lines, costs=costs.get(month, {})))
    return out


def months_back(*, today: date, count: int) -> list[date]:
    """The first days of the last `count` months, oldest first, ending with today's month."""
    index = today.year * 12 + today.month - 1
    return [date((i // 12), i % 12 + 1, 1) for i in range(index - count + 1, index + 1)]


def day_end(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
