"""Business metrics on a small data set worked out by hand (docs/METRICS.md has the rules).

January 2025 (31 days). Prices: Starter 49.00/month, Growth 299.00/month or 2,990.00/year.
Tenants (created 2024-12-01 unless said), MRR just before Jan 1 → just before Feb 1:
  alpha    Starter monthly, active throughout                       4,900 →  4,900
  bravo    Growth yearly, active throughout (299,000 / 12)         24,917 → 24,917
  charlie  Starter → Growth on Jan 16 (expansion 25,000)            4,900 → 29,900
  delta    Growth, cancelled Jan 21 (churned)                      29,900 →      0
  echo     created Jan 5 trialing Starter, converted Jan 19 (new)       0 →  4,900
  foxtrot  created Jan 3 trialing Growth, suspended Jan 17              0 →      0
  golf     Growth → Starter on Jan 10 (contraction 25,000)         29,900 →  4,900
  hotel    Starter, cancelled Dec 20, reactivated Jan 25                0 →  4,900
Opening MRR 94,517; closing 74,417 = 94,517 + 4,900 new + 4,900 reactivation + 25,000
expansion − 25,000 contraction − 29,900 churned. (Minor units, cents.)
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from operations.finance import period_metrics
from operations.models import MetricsSnapshot
from operations.services.snapshots import metrics_snapshot_take
from operations.tests.factories import usage
from tenants.models import Plan, Tenant, TenantEvent
from tenants.services import tenant_create

D = Decimal
JAN = datetime(2025, 1, 1, tzinfo=UTC)
FEB = datetime(2025, 2, 1, tzinfo=UTC)


def at(day: int, month: int = 1, year: int = 2025) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def make(slug: str, *, plan: str, status: str, interval: str = "monthly", created: datetime | None = None) -> Tenant:
    tenant = tenant_create(name=slug, slug=f"m-{slug}", plan=Plan.objects.get(code=plan), status=status,
                           billing_interval=interval)  # fmt: skip
    Tenant.objects.filter(pk=tenant.pk).update(created_at=created or at(1, 12, 2024))
    TenantEvent.objects.filter(tenant=tenant).update(created_at=created or at(1, 12, 2024))
    tenant.refresh_from_db()
    return tenant


def event(tenant: Tenant, when: datetime, kind: str, **details) -> None:
    row = TenantEvent.objects.create(tenant=tenant, kind=kind, actor_type="system", details=details)
    TenantEvent.objects.filter(pk=row.pk).update(created_at=when)


@pytest.fixture
def january(db):
    t = {}
    t["alpha"] = make("alpha", plan="starter", status="active")
    t["bravo"] = make("bravo", plan="growth", status="active", interval="yearly")
    t["charlie"] = make("charlie", plan="growth", status="active")
    event(t["charlie"], at(16), "plan_changed", **{"from": "starter", "to": "growth"})
    t["delta"] = make("delta", plan="growth", status="cancelled")
    event(t["delta"], at(21), "cancelled", **{"from": "active", "to": "cancelled"})
    t["echo"] = make("echo", plan="starter", status="active", created=at(5))
    event(t["echo"], at(19), "activated", **{"from": "trialing", "to": "active"})
    t["foxtrot"] = make("foxtrot", plan="growth", status="suspended", created=at(3))
    event(t["foxtrot"], at(17), "suspended", **{"from": "trialing", "to": "suspended"})
    t["golf"] = make("golf", plan="starter", status="active")
    event(t["golf"], at(10), "plan_changed", **{"from": "growth", "to": "starter"})
    t["hotel"] = make("hotel", plan="starter", status="active")
    event(t["hotel"], at(20, 12, 2024), "cancelled", **{"from": "active", "to": "cancelled"})
    event(t["hotel"], at(25), "reactivated", **{"from": "cancelled", "to": "active"})
    usage(t["alpha"], hour=at(9), model="gpt-4o", calls=10, tokens=1000, cost="10.00")
    usage(t["charlie"], hour=at(20), model="gpt-4o", calls=50, tokens=5000, cost="50.00")
    usage(t["charlie"], hour=FEB, model="gpt-4o", calls=1, tokens=1, cost="999.00")  # February: not January's
    return t


def test_mrr_movements_and_rates(january):
    m = period_metrics(start=JAN, end=FEB)
    assert (m.mrr_start, m.mrr) == (94_517, 74_417)
    assert (m.new, m.reactivation, m.expansion, m.contraction, m.churned) == (4_900, 4_900, 25_000, 25_000, 29_900)
    assert m.mrr_start + m.new + m.reactivation + m.expansion - m.contraction - m.churned == m.mrr
    assert m.arr == 893_004  # 74,417 × 12
    # Five paying on Jan 1 (alpha, bravo, charlie, delta, golf); delta left: 1/5.
    assert (m.paying_start, m.churned_logos, m.logo_churn_rate) == (5, 1, D("0.2"))
    # (29,900 + 25,000) / 94,517 and (29,900 + 25,000 − 25,000) / 94,517.
    assert m.revenue_churn_rate == D("0.580848")
    assert m.net_revenue_churn_rate == D("0.316345")
    # Six paying at the end: 74,417 / 6 = 12,402.83 -> 12,403.
    assert (m.paying, m.arpu) == (6, 12_403)
    # Two trials ended in January (echo converted, foxtrot suspended).
    assert (m.trials_ended, m.trials_converted, m.trial_conversion_rate) == (2, 1, D("0.5"))


def test_active_tenants_and_gross_margin_per_plan(january):
    m = period_metrics(start=JAN, end=FEB)
    plans = {row["plan"]: row for row in m.by_plan}
    # By plan at the end of January. Starter: alpha, echo, golf, hotel (all paying).
    starter, growth = plans["starter"], plans["growth"]
    assert (starter["active"], starter["trialing"], starter["paying"], starter["mrr"]) == (4, 0, 4, 19_600)
    # Growth: bravo and charlie active; delta cancelled and foxtrot suspended are not.
    assert (growth["active"], growth["paying"], growth["mrr"]) == (2, 2, 54_817)
    # Revenue is January's MRR time-weighted: alpha 4,900; echo 4,900 × 13/31 = 2,054.84;
    # golf (29,900 × 9 + 4,900 × 22) / 31 = 12,158.06; hotel 4,900 × 7/31 = 1,106.45.
    # Sum 20,219.35 cents = $202.19; tracked cost $10.00 (alpha).
    assert (starter["revenue"], starter["tracked_cost"], starter["gross_margin"]) == (
        D("202.19"),
        D("10.00"),
        D("192.19"),
    )
    # bravo 24,917; charlie (4,900 × 15 + 29,900 × 16) / 31 = 17,803.23; delta 29,900 × 20/31
    # = 19,290.32; foxtrot 0. Sum 62,010.55 cents = $620.11; cost $50.00 (charlie, January only).
    assert (growth["revenue"], growth["tracked_cost"], growth["gross_margin"]) == (D("620.11"), D("50.00"), D("570.11"))
    tenants = {row["tenant"]: row for row in m.by_tenant}
    assert tenants["m-alpha"]["gross_margin"] == D("39.00") and tenants["m-alpha"]["gross_margin_pct"] == D("79.591837")
    assert tenants["m-charlie"]["revenue"] == D("178.03") and tenants["m-charlie"]["gross_margin"] == D("128.03")
    assert "tenant-a" not in tenants  # created after January


def test_december_before_the_movements(january):
    # Dec 2024: everyone created Dec 1 is new; hotel churned on Dec 20; echo, foxtrot not yet there.
    m = period_metrics(start=at(1, 12, 2024), end=JAN)
    assert (m.mrr_start, m.mrr) == (0, 94_517)
    assert m.new == 94_517  # alpha, bravo, charlie (Starter then), delta, golf; hotel came and went inside it
    assert m.churned == 0 and m.reactivation == 0


def test_snapshot_is_idempotent_per_day(january):
    snapshot = metrics_snapshot_take(day=date(2025, 1, 31))
    assert (snapshot.mrr, snapshot.arr, snapshot.arpu, snapshot.paying_tenants) == (74_417, 893_004, 12_403, 6)
    assert (snapshot.new_mrr, snapshot.churned_mrr, snapshot.trial_conversion_rate) == (4_900, 29_900, D("0.5"))
    assert {row["plan"]: row["gross_margin"] for row in snapshot.by_plan}["growth"] == "570.11"
    again = metrics_snapshot_take(day=date(2025, 1, 31))
    assert again.pk == snapshot.pk and again.created_at == snapshot.created_at
    assert MetricsSnapshot.objects.count() == 1
    # Mid-month: as of the end of Jan 15 only golf's contraction and hotel's earlier churn count.
    mid = metrics_snapshot_take(day=date(2025, 1, 15))
    assert (mid.contraction_mrr, mid.expansion_mrr, mid.new_mrr) == (25_000, 0, 0)


def test_task_takes_yesterdays_snapshot(db):
    from operations.tasks import metrics_snapshot

    result = metrics_snapshot.delay().get()
    assert MetricsSnapshot.objects.filter(day=date.fromisoformat(result["day"])).exists()
