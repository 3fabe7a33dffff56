"""Reconciliation arithmetic, worked out by hand in each test.

The month is March 2025. Tenant A used gpt-4o (10 calls, 1M tokens, tracked $10.00) and
gpt-4o-mini (30 calls, 2M tokens, $1.00); tenant B used gpt-4o (10 calls, 1M tokens, $10.00).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from metering.models import PriceBookEntry
from operations.models import ReconciliationItem, ReconciliationRun, TenantReconciliation
from operations.selectors import reconciliation_export_rows
from operations.services.reconciliation import allocate, is_flagged, model_key, reconciliation_run, variance_of
from operations.tests.factories import MARCH, aws_bill, openai_bill, usage

D = Decimal


@pytest.fixture
def march_usage(tenant_a, tenant_b):
    usage(tenant_a, hour=MARCH, model="gpt-4o", calls=10, tokens=1_000_000, cost="10.00")
    usage(tenant_a, hour=MARCH, model="gpt-4o-mini", calls=30, tokens=2_000_000, cost="1.00")
    usage(tenant_b, hour=MARCH, model="gpt-4o", calls=10, tokens=1_000_000, cost="10.00")
    # Outside the month: never part of March's numbers.
    usage(tenant_b, hour=MARCH.replace(month=4), model="gpt-4o", calls=99, tokens=9_000_000, cost="99.00")


def test_variance_is_actual_minus_tracked_over_actual():
    assert variance_of(actual=D("100"), tracked=D("95")) == D("0.05")
    assert variance_of(actual=D("100"), tracked=D("105")) == D("-0.05")
    assert variance_of(actual=D("0"), tracked=D("3")) is None


@pytest.mark.parametrize(
    ("tracked", "flagged"),
    [("95", False), ("105", False), ("94.99", True), ("105.01", True), ("100", False), ("94.999999", True)],
)
def test_five_percent_boundary_passes_exactly(tracked, flagged):
    # actual 100: tracked 95 is +5.00% (passes), 94.99 is +5.01% (flagged); 105 is -5.00%.
    assert is_flagged(actual=D("100"), tracked=D(tracked)) is flagged


def test_tracked_cost_without_a_bill_is_flagged_and_nothing_on_both_sides_is_not():
    assert is_flagged(actual=D(0), tracked=D("0.01"))
    assert not is_flagged(actual=D(0), tracked=D(0))


def test_allocation_adds_up_exactly():
    assert allocate(D("100"), {"a": 40, "b": 10}) == {"a": D("80.000000"), "b": D("20.000000")}
    # 100 / 3 = 33.333333 each with 0.000001 left over: the largest remainder (a tie) goes to "a".
    thirds = allocate(D("100"), {"a": 1, "b": 1, "c": 1})
    assert thirds == {"a": D("33.333334"), "b": D("33.333333"), "c": D("33.333333")}
    assert sum(thirds.values()) == D("100")
    assert allocate(D("-0.30"), {"a": 1, "b": 2}) == {"a": D("-0.100000"), "b": D("-0.200000")}
    assert allocate(D("5"), {"a": 0}) == {}


def test_model_names_match_across_snapshots_and_line_items():
    assert model_key("gpt-4o-2024-08-06") == model_key("GPT-4o") == model_key("gpt-4o-2024-08-06, input") == "gpt-4o"
    assert model_key("gpt-4o-mini") == "gpt-4o-mini"


def test_month_within_tolerance_passes_and_allocates(db, tenant_a, tenant_b, march_usage):
    openai_bill(
        [("2025-03-05", "gpt-4o-2024-08-06", 2_000_000, "21.00"), ("2025-03-06", "gpt-4o-mini", 2_000_000, "1.00")]
    )
    aws_bill([("2025-03-01", "AmazonEC2", "60.00"), ("2025-03-02", "AmazonRDS", "40.00")])
    run = reconciliation_run(month=date(2025, 3, 17))
    assert run is not None and run.month == date(2025, 3, 1)
    # Tracked 21.00 (openai models), billed 22.00: (22 - 21) / 22 = 0.045454… -> passes.
    assert (run.tracked_cost, run.actual_cost) == (D("21.000000"), D("22.000000"))
    assert run.variance == D("0.045455") and run.status == "passed"
    assert run.infrastructure_cost == D("100.000000") and run.unattributed_cost == 0
    assert run.allocation_basis == "api_calls" and run.providers == ["aws", "openai"]

    items = {(i.provider, i.kind, i.item): i for i in run.items.all()}
    gpt4o = items[("openai", "model", "gpt-4o-2024-08-06")]
    assert (gpt4o.tracked_cost, gpt4o.actual_cost, gpt4o.variance) == (D(20), D(21), D("0.047619"))  # 1/21
    assert not gpt4o.flagged
    assert items[("openai", "provider", "")].variance == D("0.045455")
    assert items[("aws", "infra", "AmazonEC2")].actual_cost == D(60)
    assert items[("aws", "provider", "")].variance is None  # no model service on the AWS bill

    rows = {r.tenant_id: r for r in TenantReconciliation.objects.filter(run=run)}
    a, b = rows[tenant_a.pk], rows[tenant_b.pk]
    # gpt-4o's 21.00 split by tokens 1M : 1M = 10.50 each; gpt-4o-mini's 1.00 all A's.
    assert (a.tracked_cost, a.actual_cost) == (D("11.000000"), D("11.500000"))
    assert (b.tracked_cost, b.actual_cost) == (D("10.000000"), D("10.500000"))
    assert a.variance == D("0.043478") and b.variance == D("0.047619")  # 0.5/11.5, 0.5/10.5
    # Infrastructure 100.00 by API calls 40 : 10.
    assert (a.infrastructure_cost, b.infrastructure_cost) == (D("80.000000"), D("20.000000"))
    assert (a.api_calls, a.tokens, b.api_calls, b.tokens) == (40, 3_000_000, 10, 1_000_000)
    assert a.usage_share == D("0.8") and b.usage_share == D("0.2")


def test_exact_five_percent_passes_and_just_over_is_flagged_with_contributors(db, tenant_a, tenant_b, march_usage):
    # Tracked 21.00; billed 22.105263… would be 5%; use round numbers: bill 21 + x.
    openai_bill([("2025-03-05", "gpt-4o", 2_000_000, "19.00"), ("2025-03-06", "gpt-4o-mini", 2_000_000, "1.00")])
    # Billed 20.00, tracked 21.00: (20 - 21) / 20 = -0.05 exactly -> passes.
    run = reconciliation_run(month=date(2025, 3, 1))
    assert run.variance == D("-0.05") and run.status == "passed"

    openai_bill([("2025-03-07", "gpt-4o", 1, "10.00")], name="more.csv")
    # Billed 30.00 now, tracked 21.00: (30 - 21) / 30 = 0.30 -> flagged; gpt-4o is the difference.
    run = reconciliation_run(month=date(2025, 3, 1))
    assert run.status == "flagged" and run.variance == D("0.3")
    assert run.contributors["flagged_providers"] == ["openai"]
    top = run.contributors["items"][0]
    assert (top["item"], top["tracked_cost"], top["actual_cost"], top["difference"]) == (
        "gpt-4o", "20.000000", "29.000000", "9.000000",
    )  # fmt: skip
    assert [t["tenant"] for t in run.contributors["tenants"]] == ["tenant-a", "tenant-b"]  # 4.50 each; a sorts first


def test_unchanged_inputs_do_not_make_a_new_run_and_force_does(db, march_usage):
    openai_bill([("2025-03-05", "gpt-4o", 1, "21.00")])
    first = reconciliation_run(month=date(2025, 3, 1))
    assert reconciliation_run(month=date(2025, 3, 1)).pk == first.pk
    assert reconciliation_run(month=date(2025, 3, 1), force=True).pk != first.pk
    assert reconciliation_run(month=date(2025, 2, 1)) is None  # no bill that month
    assert ReconciliationRun.objects.count() == 2


def test_aws_bedrock_is_compared_with_models_priced_under_aws(db, tenant_a):
    PriceBookEntry.objects.create(
        model="claude-3-haiku", provider="aws", input_per_million=D("0.25"), output_per_million=D("1.25"),
        effective_from=MARCH.replace(year=2024),
    )  # fmt: skip
    usage(tenant_a, hour=MARCH, model="claude-3-haiku", calls=5, tokens=4_000_000, cost="1.00")
    aws_bill([("2025-03-01", "AmazonBedrock", "1.02"), ("2025-03-01", "AmazonEC2", "5.00")])
    run = reconciliation_run(month=date(2025, 3, 1))
    bedrock = run.items.get(kind=ReconciliationItem.Kind.MODEL)
    assert (bedrock.item, bedrock.tracked_cost, bedrock.actual_cost) == ("AmazonBedrock", D(1), D("1.02"))
    assert run.variance == D("0.019608") and run.status == "passed"  # 0.02 / 1.02
    row = TenantReconciliation.objects.get(run=run)
    assert (row.actual_cost, row.infrastructure_cost) == (D("1.020000"), D("5.000000"))


def test_billed_model_nobody_tracked_is_unattributed(db, march_usage):
    openai_bill([("2025-03-05", "gpt-4o", 1, "20.00"), ("2025-03-05", "gpt-4o-mini", 1, "1.00"),
                 ("2025-03-05", "o1-preview", 1, "3.00")])  # fmt: skip
    run = reconciliation_run(month=date(2025, 3, 1))
    assert run.unattributed_cost == D(3)
    o1 = run.items.get(item="o1-preview")
    assert (o1.tracked_cost, o1.actual_cost, o1.flagged) == (D(0), D(3), True)


def test_tenant_rows_never_mix_tenants(db, tenant_a, tenant_b, make_tenant, march_usage):
    other = make_tenant()
    usage(other, hour=MARCH.replace(month=2), model="gpt-4o", calls=7, tokens=7, cost="7.00")  # February only
    openai_bill([("2025-03-05", "gpt-4o", 1, "20.00"), ("2025-03-05", "gpt-4o-mini", 1, "1.00")])
    run = reconciliation_run(month=date(2025, 3, 1))
    rows = reconciliation_export_rows(run=run)
    assert [r[0] for r in rows] == sorted([str(tenant_a.pk), str(tenant_b.pk)], key=int)
    by_id = {int(r[0]): r for r in rows}
    assert by_id[tenant_a.pk][1:] == ["11.000000", "11.000000", "0.000000"]
    assert by_id[tenant_b.pk][1:] == ["10.000000", "10.000000", "0.000000"]
