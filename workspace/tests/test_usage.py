"""The usage page: exact numbers per day, breakdowns, the CSV of what is shown (equal to the
usage API), hostile names, bad filters, and the empty state."""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from metering.selectors import usage_daily
from workspace.selectors.usage import usage_table
from workspace.tests.conftest import query

pytestmark = pytest.mark.django_db


def day_at(days_ago: int, hour: int = 10) -> datetime:
    today = timezone.now().astimezone(UTC).date() - timedelta(days=days_ago)
    return datetime(today.year, today.month, today.day, hour, 15, tzinfo=UTC)


@pytest.fixture
def usage_a(record):
    """Three days ago: 2 gpt-4o (legal, ana) + 1 gpt-4o-mini (sales, bo); two days ago: 1 gpt-4o
    without a user. gpt-4o costs 1000 × 2.50/1M + 100 × 10/1M = 0.0035 a query; gpt-4o-mini
    1000 × 0.15/1M + 100 × 0.60/1M = 0.00021."""
    record([
        query("u1", "tenant-a", day_at(3), latency_ms=100),
        query("u2", "tenant-a", day_at(3, 11), latency_ms=300),
        query("u3", "tenant-a", day_at(3, 12), model="gpt-4o-mini", department="sales", user="bo", latency_ms=900),
        query("u4", "tenant-a", day_at(2), user=""),
    ])  # fmt: skip
    return timezone.now().date()


def rows_of(response):
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_table_by_model_has_exact_numbers(usage_a):
    start = usage_a - timedelta(days=6)
    table = usage_table(tenant_id=_tenant_a_id(), metric="cost", breakdown="model", start=start, end=usage_a)
    assert [c.label for c in table.columns] == ["gpt-4o", "gpt-4o-mini"]
    by_day = dict(zip(table.days, table.rows, strict=True))
    assert by_day[usage_a - timedelta(days=3)] == [Decimal("0.007000"), Decimal("0.000210")]
    assert by_day[usage_a - timedelta(days=2)] == [Decimal("0.003500"), Decimal("0.000000")]
    assert table.grand_total == Decimal("0.010710")
    assert len(table.days) == 7


def _tenant_a_id():
    from tenants.models import Tenant

    return Tenant.objects.get(slug="tenant-a").pk


def test_csv_without_breakdown_equals_usage_api_csv(as_role, usage_a):
    client = as_role("viewer")
    for metric, column in (("queries", 1), ("tokens", 2), ("cost", 3), ("latency", 4)):
        ours = rows_of(client.get("/usage/export.csv", {"metric": metric, "range": "7"}))
        start = (usage_a - timedelta(days=6)).isoformat()
        theirs = rows_of(
            client.get("/api/v1/usage.csv", {"from": start, "to": (usage_a + timedelta(days=1)).isoformat()})
        )
        assert ours[0] == ["date", theirs[0][column]]
        assert [(r[0], r[1]) for r in ours[1:]] == [(r[0], r[column]) for r in theirs[1:]]


def test_csv_by_model_equals_usage_api(as_role, usage_a):
    client = as_role("viewer")
    ours = list(csv.DictReader(io.StringIO(client.get("/usage/export.csv", {"breakdown": "model", "range": "7"})
                                           .content.decode())))  # fmt: skip
    start = (usage_a - timedelta(days=6)).isoformat()
    body = client.get("/api/v1/usage", {"from": start, "to": (usage_a + timedelta(days=1)).isoformat(),
                                        "granularity": "day", "group_by": "model"}).json()  # fmt: skip
    api = {(r["period"], r["model"]): str(r["queries"]) for r in body["data"]}
    got = {(r["date"], m): v for r in ours for m, v in r.items() if m not in ("date", "total") and v != "0"}
    assert got == api
    assert sum(int(r["total"]) for r in ours) == 4


def test_page_table_shows_what_the_csv_holds(as_role, usage_a):
    client = as_role("viewer")
    page = client.get("/usage/", {"metric": "tokens", "breakdown": "department", "range": "7"}).content.decode()
    exported = rows_of(client.get("/usage/export.csv", {"metric": "tokens", "breakdown": "department", "range": "7"}))
    assert exported[0] == ["date", "legal", "sales", "total"]
    three = (usage_a - timedelta(days=3)).isoformat()
    row = next(r for r in exported if r[0] == three)
    assert row == [three, "2200", "1100", "3300"]
    assert "2,200" in page and "3,300" in page and "<svg" in page


def test_breakdown_by_user_shows_events_without_user(usage_a):
    start = usage_a - timedelta(days=6)
    table = usage_table(tenant_id=_tenant_a_id(), metric="queries", breakdown="user", start=start, end=usage_a)
    assert [c.label for c in table.columns] == ["ana", "bo", "(no user)"]
    assert sum(table.totals) == 4


def test_many_groups_fold_into_other(record):
    record([query(f"m{i}", "tenant-a", day_at(1), model=f"model-{i:02d}") for i in range(11)]
           + [query("m-big", "tenant-a", day_at(1, 12), model="model-10")])  # fmt: skip
    today = timezone.now().date()
    table = usage_table(tenant_id=_tenant_a_id(), metric="queries", breakdown="model", start=today - timedelta(days=2),
                        end=today)  # fmt: skip
    labels = [c.label for c in table.columns]
    assert len(labels) == 9 and labels[0] == "model-10" and labels[-1] == "Other"
    assert sum(table.totals) == 12
    assert table.rows[1][-1] == 3  # the three smallest models, folded


def test_latency_p95_equals_metering_daily_p95(usage_a):
    start = usage_a - timedelta(days=6)
    table = usage_table(tenant_id=_tenant_a_id(), metric="latency", breakdown="none", start=start, end=usage_a)
    expected = [row["latency_p95_ms"] for row in usage_daily(tenant_id=_tenant_a_id(), start=start, end=usage_a)]
    assert table.totals == expected
    by_model = usage_table(tenant_id=_tenant_a_id(), metric="latency", breakdown="model", start=start, end=usage_a)
    assert by_model.totals == expected  # "All" merges every model's histogram
    mini = dict(zip(by_model.days, [row[1] for row in by_model.rows], strict=True))
    assert 800 < mini[usage_a - timedelta(days=3)] < 1035  # a single 900 ms query: within its ~15% bucket


def test_latency_by_user_says_it_is_not_recorded(as_role, usage_a):
    page = as_role("viewer").get("/usage/", {"metric": "latency", "breakdown": "user"}).content.decode()
    assert "Latency is not recorded per user" in page


def test_hostile_group_names_are_escaped_and_csv_safe(as_role, record):
    record([query("h1", "tenant-a", day_at(1), model="<script>alert(1)</script>"),
            query("h2", "tenant-a", day_at(1), model="=HYPERLINK(\"http://evil\")")])  # fmt: skip
    client = as_role("viewer")
    page = client.get("/usage/", {"breakdown": "model", "range": "7"}).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    header = rows_of(client.get("/usage/export.csv", {"breakdown": "model", "range": "7"}))[0]
    assert '\'=HYPERLINK("http://evil")' in header
    assert "<script>alert(1)</script>" in header  # a CSV is data, not HTML


@pytest.mark.parametrize(
    "params, message",
    [
        ({"range": "custom", "start": "2026-11-20"}, "needs both a start and an end date"),
        ({"range": "custom", "start": "2026-11-20", "end": "2026-11-10"}, "must not be before the start"),
        ({"range": "custom", "start": "2024-01-01", "end": "2026-01-01"}, "at most 366 days"),
        ({"range": "custom", "start": "2999-01-01", "end": "2999-01-02"}, "starts in the future"),
        ({"range": "custom", "start": "yesterday", "end": "x"}, "Enter a valid date"),
        ({"range": "forever"}, "Select a valid choice"),
        ({"metric": "<b>bold</b>"}, "Select a valid choice"),
    ],
)
def test_bad_filters_fall_back_with_a_message(as_role, params, message):
    response = as_role("viewer").get("/usage/", params)
    assert response.status_code == 200
    text = response.content.decode()
    assert message in text
    assert "Showing the last 30 days instead" in text
    assert "<b>bold</b>" not in text


def test_custom_range_is_used(as_role, usage_a):
    start = (usage_a - timedelta(days=3)).isoformat()
    end = (usage_a - timedelta(days=2)).isoformat()
    client = as_role("viewer")
    rows = rows_of(client.get("/usage/export.csv", {"range": "custom", "start": start, "end": end}))
    assert rows[1:] == [[start, "3"], [end, "1"]]


def test_brand_new_tenant_has_an_intentional_empty_state(make_tenant, client_for):
    tenant = make_tenant(plan="free")
    owner = tenant.memberships.get(role="owner").user
    page = client_for(tenant, owner).get("/usage/").content.decode()
    assert "No usage in this range." in page
    assert "<svg" not in page and "usage-table" not in page


def test_latency_cache_is_exact_and_follows_new_events(record, usage_a):
    """A past day's histogram is cached under its event and token sums: a second read hits
    the cache and gives the same numbers; an event added to that day (late) is seen at once."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    start = usage_a - timedelta(days=6)
    args = {"tenant_id": _tenant_a_id(), "metric": "latency", "breakdown": "model", "start": start, "end": usage_a}
    first = usage_table(**args)
    with CaptureQueriesContext(connection) as queries:
        second = usage_table(**args)
    assert (second.rows, second.totals) == (first.rows, first.totals)
    assert not any("latency_hist" in q["sql"] for q in queries.captured_queries)  # all from the cache
    record([query("late-1", "tenant-a", day_at(3, 13), latency_ms=60_000)])
    third = usage_table(**args)
    day = (usage_a - timedelta(days=3) - start).days
    assert third.totals[day] > first.totals[day]
    daily = usage_daily(tenant_id=_tenant_a_id(), start=start, end=usage_a)
    assert third.totals == [r["latency_p95_ms"] for r in daily]
    # Two changed days with an unchanged one between them: summed by name, not by range.
    record([query("late-2", "tenant-a", day_at(3, 14), latency_ms=5), query("new-1", "tenant-a", day_at(1))])
    fourth = usage_table(**args)
    daily = usage_daily(tenant_id=_tenant_a_id(), start=start, end=usage_a)
    assert fourth.totals == [r["latency_p95_ms"] for r in daily]
    assert fourth.rows[day] != third.rows[day]
