"""Usage reads: platform and workspace APIs, CSV, and tenant isolation."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from workspace.keys import api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db

# Dates relative to today (events older than 90 days are refused), inside one month.
_base = (timezone.now() - timedelta(days=5)).date()
if _base.day > 25:
    _base = _base.replace(day=20)
DAY0, DAY1, DAY2, DAY3, DAY4 = (str(_base + timedelta(days=i)) for i in range(-1, 4))
MONTH = str(_base.replace(day=1))
NEXT_MONTH = str((_base.replace(day=1) + timedelta(days=32)).replace(day=1))
LONG_AGO = str(_base - timedelta(days=40))


def q(i, tenant="tenant-a", ts=f"{DAY1}T10:15:00+00:00", **props):
    base = {"model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100, "latency_ms": 200, "department": "legal",
            "user": "ana"}  # fmt: skip
    return {"id": i, "tenant": tenant, "type": "query", "timestamp": ts, "properties": {**base, **props}}


@pytest.fixture
def usage(platform_client, tenant_a, tenant_b):
    events = [
        q("a1"),
        q("a2", ts=f"{DAY1}T11:00:00+00:00", model="gpt-4o-mini", department="sales", user="bo", latency_ms=900),
        q("a3", ts=f"{DAY2}T09:00:00+00:00", user="bo"),
        q("b1", tenant="tenant-b", input_tokens=5000),
    ]
    response = platform_client.post("/api/v1/events", data=json.dumps(events), content_type="application/json")
    assert response.json()["accepted"] == 4


def get(client, path, **params):
    return client.get(path, params)


def test_platform_usage_by_model_per_day(platform_client, usage):
    body = get(platform_client, "/api/v1/tenants/tenant-a/usage", **{"from": DAY1, "to": DAY3,
               "granularity": "day", "group_by": "model"}).json()  # fmt: skip
    # gpt-4o: 1000*2.5e-6 + 100*10e-6 = 0.0035 per query; gpt-4o-mini: 1000*0.15e-6 + 100*0.6e-6 = 0.00021
    one = {"queries": 1, "input_tokens": 1000, "output_tokens": 100}
    assert body["data"] == [
        {"period": DAY1, "model": "gpt-4o", **one, "cost_usd": "0.003500"},
        {"period": DAY1, "model": "gpt-4o-mini", **one, "cost_usd": "0.000210"},
        {"period": DAY2, "model": "gpt-4o", **one, "cost_usd": "0.003500"},
    ]


def test_by_model_over_partial_days_adds_hours_and_whole_days(platform_client, tenant_a):
    """A range starting and ending inside a day: the whole days come from the daily rollup,
    the hours at either end from the hourly one; events outside the range never count."""
    times = [f"{DAY0}T08:00:00+00:00", f"{DAY0}T14:00:00+00:00", f"{DAY1}T03:00:00+00:00",
             f"{DAY2}T05:00:00+00:00", f"{DAY2}T07:30:00+00:00"]  # fmt: skip
    events = [q(f"p{i}", ts=ts) for i, ts in enumerate(times)]
    assert (
        platform_client.post("/api/v1/events", data=json.dumps(events), content_type="application/json").json()[
            "accepted"
        ]
        == 5
    )
    params = {"from": f"{DAY0}T12:00:00Z", "to": f"{DAY2}T06:00:00Z", "granularity": "day", "group_by": "model"}
    body = get(platform_client, "/api/v1/tenants/tenant-a/usage", **params).json()
    assert [(row["period"], row["queries"]) for row in body["data"]] == [(DAY0, 1), (DAY1, 1), (DAY2, 1)]
    params["granularity"] = "month"
    body = get(platform_client, "/api/v1/tenants/tenant-a/usage", **params).json()
    assert sum(row["queries"] for row in body["data"]) == 3


def test_platform_usage_by_meter_month(platform_client, usage):
    body = get(platform_client, "/api/v1/tenants/tenant-a/usage", **{"from": MONTH, "to": NEXT_MONTH,
               "granularity": "month", "group_by": "meter"}).json()  # fmt: skip
    values = {row["meter"]: row["value"] for row in body["data"]}
    assert values == {
        "api_calls": "3.000000",
        "input_tokens": "3000.000000",
        "output_tokens": "300.000000",
        "ai_tokens": "3300.000000",
        "active_users": 2,
    }


def test_usage_by_user_and_department(platform_client, usage):
    by_user = get(platform_client, "/api/v1/tenants/tenant-a/usage", **{"from": DAY1, "to": DAY3,
                  "granularity": "month", "group_by": "user"}).json()["data"]  # fmt: skip
    assert {(r["user"], r["queries"]) for r in by_user} == {("ana", 1), ("bo", 2)}
    by_dept = get(platform_client, "/api/v1/tenants/tenant-a/usage", **{"from": DAY1, "to": DAY3,
                  "granularity": "hour", "group_by": "department"}).json()["data"]  # fmt: skip
    assert [(r["period"], r["department"]) for r in by_dept] == [
        (f"{DAY1}T10:00:00Z", "legal"),
        (f"{DAY1}T11:00:00Z", "sales"),
        (f"{DAY2}T09:00:00Z", "legal"),
    ]


def test_hourly_by_user_reads_raw_events_for_short_ranges(platform_client, usage):
    rows = get(platform_client, "/api/v1/tenants/tenant-a/usage", **{"from": DAY1, "to": DAY3,
               "granularity": "hour", "group_by": "user"}).json()["data"]  # fmt: skip
    assert [(r["period"], r["user"]) for r in rows] == [
        (f"{DAY1}T10:00:00Z", "ana"),
        (f"{DAY1}T11:00:00Z", "bo"),
        (f"{DAY2}T09:00:00Z", "bo"),
    ]
    long = get(platform_client, "/api/v1/tenants/tenant-a/usage", **{"from": LONG_AGO, "to": DAY3,
               "granularity": "hour", "group_by": "user"})  # fmt: skip
    assert long.status_code == 400
    assert "at most 7 days" in long.json()["error"]["message"]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"granularity": "week"}, "granularity must be one of"),
        ({"group_by": "planet"}, "group_by must be one of"),
        ({"from": "yesterday"}, "`from` must be a date"),
        ({"from": "2026-11-20T10:00:00"}, "needs a time zone"),
        ({"from": DAY3, "to": DAY1}, "`to` must be after `from`"),
        ({"from": "2020-01-01", "to": DAY1}, "at most 800 days"),
    ],
)
def test_bad_usage_queries_are_400(platform_client, params, message):
    response = get(platform_client, "/api/v1/tenants/tenant-a/usage", **params)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_platform_usage_unknown_tenant_404(platform_client):
    assert get(platform_client, "/api/v1/tenants/nobody/usage").status_code == 404
    assert get(platform_client, "/api/v1/tenants/tenant-template/usage").status_code == 404


def test_accepted_event_visible_at_once(platform_client, tenant_a):
    from django.utils import timezone

    now = timezone.now()
    platform_client.post(
        "/api/v1/events", data=json.dumps(q("rt-1", ts=now.isoformat())), content_type="application/json"
    )
    body = get(platform_client, "/api/v1/tenants/tenant-a/usage", **{"from": (now - timedelta(hours=1)).isoformat(),
               "to": (now + timedelta(hours=1)).isoformat(), "granularity": "hour"}).json()  # fmt: skip
    assert {"meter": "api_calls", "value": "1.000000"}.items() <= next(
        r for r in body["data"] if r["meter"] == "api_calls"
    ).items()


# --- workspace (tenant host) -------------------------------------------------------------------


def key_for(tenant, scopes=("read_usage",)):
    with schema_context(tenant.schema_name):
        return api_key_create(name="dashboards", scopes=list(scopes))


def test_member_reads_own_usage(client_for, tenant_a, owner_a, usage):
    body = client_for(tenant_a, owner_a).get("/api/v1/usage", {"from": DAY1, "to": DAY3, "group_by": "model"}).json()
    assert body["tenant"] == "tenant-a"
    assert sum(r["queries"] for r in body["data"]) == 3


def test_api_key_reads_own_usage_and_revoke_is_immediate(client_for, tenant_a, usage):
    key, raw = key_for(tenant_a)
    client = client_for(tenant_a)
    ok = client.get("/api/v1/usage", {"from": DAY1, "to": DAY3}, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert ok.status_code == 200
    with schema_context(tenant_a.schema_name):
        api_key_revoke(key=key)
    connection.set_schema_to_public()
    refused = client.get("/api/v1/usage", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert refused.status_code == 401


def test_key_without_read_scope_is_403(client_for, tenant_a):
    _, raw = key_for(tenant_a, scopes=["write_events"])
    response = client_for(tenant_a).get("/api/v1/usage", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 403


def test_tenant_a_key_never_sees_b(client_for, tenant_a, tenant_b, usage):
    _, raw_a = key_for(tenant_a)
    connection.set_schema_to_public()
    on_b = client_for(tenant_b).get("/api/v1/usage", HTTP_AUTHORIZATION=f"Bearer {raw_a}")
    assert on_b.status_code == 401
    assert b"tenant-b" not in on_b.content


def test_member_of_a_cannot_read_b_usage(client_for, tenant_b, owner_a, usage):
    response = client_for(tenant_b, owner_a).get("/api/v1/usage")
    assert response.status_code == 404
    assert b"5000" not in response.content


def test_anonymous_and_platform_token_refused_on_tenant_api(client_for, tenant_a, platform_token):
    assert client_for(tenant_a).get("/api/v1/usage").status_code in (401, 403)
    with_platform = client_for(tenant_a).get("/api/v1/usage", HTTP_AUTHORIZATION=f"Bearer {platform_token}")
    assert with_platform.status_code == 401


def test_usage_csv_one_row_per_day_with_zero_days(client_for, tenant_a, owner_a, usage):
    response = client_for(tenant_a, owner_a).get("/api/v1/usage.csv", {"from": DAY0, "to": DAY4})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["date", "query_count", "tokens", "cost_usd", "latency_p95_ms"]
    assert [r[0] for r in rows[1:]] == [DAY0, DAY1, DAY2, DAY3]
    by_day = {r[0]: r for r in rows[1:]}
    assert by_day[DAY0] == [DAY0, "0", "0", "0.000000", ""]
    assert by_day[DAY1][1:4] == ["2", "2200", "0.003710"]
    # two queries, 200 ms and 900 ms: the p95 estimate lies in the bucket holding 900 ms
    from metering.latency import BOUNDS_MS, bucket_of

    upper = BOUNDS_MS[bucket_of(900)]
    lower = BOUNDS_MS[bucket_of(900) - 1]
    assert (lower, upper) == (819, 942)
    assert lower < float(by_day[DAY1][4]) <= upper
    assert by_day[DAY2][1:3] == ["1", "1100"]


def test_usage_rows_are_per_tenant(platform_client, usage):
    a = get(platform_client, "/api/v1/tenants/tenant-a/usage", **{"from": DAY1, "to": DAY3, "group_by": "model"})
    b = get(platform_client, "/api/v1/tenants/tenant-b/usage", **{"from": DAY1, "to": DAY3, "group_by": "model"})
    assert sum(r["input_tokens"] for r in a.json()["data"]) == 3000
    assert sum(r["input_tokens"] for r in b.json()["data"]) == 5000


def test_hourly_series_times_are_utc(platform_client, usage):
    rows = get(platform_client, "/api/v1/tenants/tenant-a/usage", **{"from": DAY1, "to": DAY2, "granularity": "hour",
               "group_by": "model"}).json()["data"]  # fmt: skip
    assert rows[0]["period"] == f"{DAY1}T10:00:00Z"
    assert datetime.fromisoformat(rows[0]["period"].replace("Z", "+00:00")).tzinfo == UTC
