"""Event ingest over HTTP: accepted / duplicate / rejected per event, body errors, cost."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from metering.models import UsageCursor, UsageDaily, UsageEvent, UsageHourly, UsageUserDaily

pytestmark = pytest.mark.django_db


def event(i="e1", tenant="tenant-a", **props):
    body = {
        "id": i,
        "tenant": tenant,
        "type": "query",
        "timestamp": props.pop("timestamp", timezone.now().isoformat()),
        "properties": {"model": "gpt-4o", "input_tokens": 1200, "output_tokens": 300, "latency_ms": 420,
                       "department": "legal", "user": "u_17", **props},
    }  # fmt: skip
    return body


def post(client, body, raw=False):
    data = body if raw else json.dumps(body)
    return client.post("/api/v1/events", data=data, content_type="application/json")


def test_single_event_accepted_with_cost(platform_client, tenant_a):
    response = post(platform_client, event("q-1"))
    assert response.status_code == 200
    assert response.json() == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": 0,
        "results": [{"index": 0, "id": "q-1", "status": "accepted"}],
    }
    stored = UsageEvent.objects.get(tenant=tenant_a, event_id="q-1")
    # gpt-4o: $2.50 / 1M input, $10.00 / 1M output -> 1200*2.5e-6 + 300*10e-6 = 0.003 + 0.003
    assert stored.cost == Decimal("0.0060000000")
    assert (stored.model, stored.department, stored.user_ref, stored.latency_ms) == ("gpt-4o", "legal", "u_17", 420)
    assert not stored.unpriced and not stored.late


def test_batch_mixes_good_and_bad(platform_client, tenant_a):
    batch = [event("b-1"), {"id": "b-2"}, event("b-3", input_tokens=-5), event("b-1")]
    response = post(platform_client, batch)
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 1, 2)
    statuses = {(r["index"], r["status"], r.get("code")) for r in body["results"]}
    assert statuses == {
        (0, "accepted", None),
        (1, "rejected", "unknown_tenant"),
        (2, "rejected", "invalid_quantity"),
        (3, "duplicate", None),
    }
    assert UsageEvent.objects.filter(tenant=tenant_a, event_id__startswith="b-").count() == 1


def test_resent_event_counts_once(platform_client, tenant_a):
    assert post(platform_client, event("r-1")).json()["accepted"] == 1
    again = post(platform_client, event("r-1", input_tokens=999)).json()
    assert again["accepted"] == 0 and again["duplicates"] == 1
    assert UsageEvent.objects.get(tenant=tenant_a, event_id="r-1").input_tokens == 1200


def test_resent_35_days_later_still_duplicate(platform_client, tenant_a):
    old = (timezone.now() - timedelta(days=36)).isoformat()
    assert post(platform_client, event("old-1", timestamp=old)).json()["accepted"] == 1
    assert post(platform_client, event("old-1")).json()["duplicates"] == 1


def test_same_id_in_two_tenants_is_two_events(platform_client, tenant_a, tenant_b):
    body = post(platform_client, [event("shared"), event("shared", tenant="tenant-b")]).json()
    assert body["accepted"] == 2


@pytest.mark.parametrize(
    "mutate, code",
    [
        (lambda e: e.update(tenant="nobody"), "unknown_tenant"),
        (lambda e: e.update(tenant="tenant-template"), "unknown_tenant"),
        (lambda e: e.update(tenant="public"), "unknown_tenant"),
        (lambda e: e.update(type="teleport"), "unknown_event_type"),
        (lambda e: e.pop("id"), "invalid_id"),
        (lambda e: e.update(id="x" * 201), "invalid_id"),
        (lambda e: e.update(id="bad\nid"), "invalid_id"),
        (lambda e: e.update(id=17), "invalid_id"),
        (lambda e: e.update(timestamp="yesterday"), "invalid_timestamp"),
        (lambda e: e.update(timestamp="2026-11-23T10:00:00"), "invalid_timestamp"),  # no time zone
        (lambda e: e.update(timestamp=(timezone.now() + timedelta(minutes=6)).isoformat()), "timestamp_in_future"),
        (lambda e: e.update(timestamp=(timezone.now() - timedelta(days=91)).isoformat()), "timestamp_too_old"),
        (lambda e: e["properties"].update(input_tokens=-1), "invalid_quantity"),
        (lambda e: e["properties"].update(output_tokens="300"), "invalid_quantity"),
        (lambda e: e["properties"].update(output_tokens=True), "invalid_quantity"),
        (lambda e: e["properties"].update(input_tokens=1.5), "invalid_quantity"),
        (lambda e: e["properties"].update(latency_ms=-3), "invalid_quantity"),
        (lambda e: e.update(properties=[1, 2]), "invalid_properties"),
        (lambda e: e["properties"].update(blob="x" * 5000), "properties_too_large"),
        (lambda e: e["properties"].update(model=42), "invalid_property"),
        (lambda e: e["properties"].update(user="u" * 101), "invalid_property"),
        (lambda e: e.clear(), "invalid_id"),
    ],
)
def test_each_rejection_has_its_code(platform_client, mutate, code):
    bad = event("rej-1")
    mutate(bad)
    response = post(platform_client, [bad])
    assert response.status_code == 400
    result = response.json()["results"][0]
    assert result["status"] == "rejected"
    assert result["code"] == code, result
    assert result["message"]
    assert not UsageEvent.objects.filter(event_id="rej-1").exists()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_rejected_per_event(platform_client, tenant_a, literal):
    good = json.dumps(event("fine-1"))
    bad = json.dumps(event("nan-1")).replace('"input_tokens": 1200', f'"input_tokens": {literal}')
    response = post(platform_client, f"[{good}, {bad}]", raw=True)
    body = response.json()
    assert body["accepted"] == 1
    assert body["results"][1]["code"] == "invalid_quantity"


@pytest.mark.parametrize(
    "raw, status, code",
    [
        ("{not json", 400, "invalid_json"),
        ("", 400, "empty_body"),
        ("[]", 400, "empty_batch"),
        ("42", 400, "invalid_shape"),
        ('"text"', 400, "invalid_shape"),
        ('{"events": 5}', 400, "invalid_shape"),
    ],
)
def test_bad_body_is_400_and_writes_nothing(platform_client, raw, status, code):
    before = UsageEvent.objects.count()
    response = post(platform_client, raw, raw=True)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert UsageEvent.objects.count() == before


def test_batch_over_1000_refused(platform_client):
    response = post(platform_client, [event(f"big-{i}") for i in range(1001)])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "batch_too_large"
    assert not UsageEvent.objects.filter(event_id__startswith="big-").exists()


def test_oversized_body_is_413(platform_client):
    response = platform_client.post(
        "/api/v1/events", data=b"[" + b" " * (9 * 1024 * 1024) + b"]", content_type="application/json"
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_full_batch_of_1000(platform_client, tenant_a):
    body = post(platform_client, {"events": [event(f"k-{i}", user=f"u{i % 7}") for i in range(1000)]}).json()
    assert body["accepted"] == 1000
    assert UsageEvent.objects.filter(tenant=tenant_a, event_id__startswith="k-").count() == 1000


@pytest.mark.parametrize("header", [None, "Bearer nope", "Token abc", "Bearer sop_" + "x" * 43])
def test_events_need_a_valid_platform_token(client_for, header, tenant_a):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client_for().post(
        "/api/v1/events", data=json.dumps(event("auth-1")), content_type="application/json", **extra
    )
    assert response.status_code == 401
    assert not UsageEvent.objects.filter(event_id="auth-1").exists()


def test_events_not_served_on_tenant_host(platform_token, client_for, tenant_a):
    client = client_for(tenant_a)
    response = client.post(
        "/api/v1/events", data=json.dumps(event("host-1")), content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {platform_token}",
    )  # fmt: skip
    assert response.status_code == 404


def test_unpriced_model_is_flagged_not_zero_silently(platform_client, tenant_a):
    body = post(platform_client, event("np-1", model="mystery-llm-9")).json()
    assert body["results"][0] == {"index": 0, "id": "np-1", "status": "accepted", "unpriced": True}
    stored = UsageEvent.objects.get(tenant=tenant_a, event_id="np-1")
    assert stored.unpriced and stored.cost == 0
    assert UsageHourly.objects.get(tenant=tenant_a, model="mystery-llm-9").unpriced_events == 1


def test_price_in_force_at_event_time(platform_client, tenant_a):
    from metering.pricing import price_entry_create

    change = (timezone.now() - timedelta(days=10)).replace(hour=0, minute=0, second=0, microsecond=0)
    price_entry_create(
        model="gpt-4o", input_per_million=Decimal("5"), output_per_million=Decimal("20"), effective_from=change,
    )  # fmt: skip
    from metering import pricing

    pricing._cached = None  # the version bump happens on commit; this test never commits
    before = event("p-old", timestamp=(change - timedelta(minutes=1)).isoformat())
    after = event("p-new", timestamp=change.isoformat())
    post(platform_client, [before, after])
    costs = dict(UsageEvent.objects.filter(tenant=tenant_a, event_id__startswith="p-").values_list("event_id", "cost"))
    assert costs["p-old"] == Decimal("0.006")  # 1200*2.5e-6 + 300*10e-6
    assert costs["p-new"] == Decimal("0.012")  # 1200*5e-6 + 300*20e-6
    pricing._cached = None


def test_late_event_kept_and_flagged(platform_client, tenant_a):
    closed = timezone.now() - timedelta(days=2)
    UsageCursor.objects.create(tenant=tenant_a, closed_through=closed)
    body = post(platform_client, [event("late-1", timestamp=(closed - timedelta(hours=1)).isoformat()), event("now-1")])
    results = body.json()["results"]
    assert results[0] == {"index": 0, "id": "late-1", "status": "accepted", "late": True}
    assert results[1] == {"index": 1, "id": "now-1", "status": "accepted"}
    assert UsageEvent.objects.get(tenant=tenant_a, event_id="late-1").late


def test_rollups_agree_with_events(platform_client, tenant_a):
    hour = (timezone.now() - timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)
    ts = (hour + timedelta(minutes=15)).isoformat()
    post(platform_client, [event(f"ru-{i}", timestamp=ts, user=f"u{i % 3}", latency_ms=100 + i) for i in range(30)])
    hourly = UsageHourly.objects.get(tenant=tenant_a, hour=hour)
    assert (hourly.events, hourly.input_tokens, hourly.output_tokens) == (30, 36000, 9000)
    assert hourly.cost == Decimal("0.18")  # 30 * 0.006
    assert sum(hourly.latency_hist) == 30
    users = dict(UsageUserDaily.objects.filter(tenant=tenant_a).values_list("user_ref", "events"))
    assert users == {"u0": 10, "u1": 10, "u2": 10}


def test_daily_rollup_sums_hours_and_departments(platform_client, tenant_a):
    """The daily rollup is the hourly one summed over the day's hours and departments (per
    model), histograms bucket by bucket — across batches too."""
    day = (timezone.now() - timedelta(days=4)).replace(hour=0, minute=0, second=0, microsecond=0)
    batches = [
        [event(f"dr-a{i}", timestamp=(day + timedelta(hours=2, minutes=i)).isoformat(), department="legal",
               latency_ms=50 + i) for i in range(10)],
        [event(f"dr-b{i}", timestamp=(day + timedelta(hours=20, minutes=i)).isoformat(), department="sales",
               latency_ms=900 + i) for i in range(5)]
        + [event(f"dr-c{i}", timestamp=(day + timedelta(hours=5)).isoformat(), model="claude-3-haiku")
           for i in range(3)],
    ]  # fmt: skip
    for batch in batches:
        assert post(platform_client, batch).json()["accepted"] == len(batch)
    hourly = UsageHourly.objects.filter(tenant=tenant_a, hour__gte=day, hour__lt=day + timedelta(days=1))
    daily = {d.model: d for d in UsageDaily.objects.filter(tenant=tenant_a, day=day.date())}
    assert set(daily) == {"gpt-4o", "claude-3-haiku"}
    for model, row in daily.items():
        hours = [h for h in hourly if h.model == model]
        assert row.events == sum(h.events for h in hours)
        assert row.input_tokens == sum(h.input_tokens for h in hours)
        assert row.cost == sum(h.cost for h in hours)
        merged = [sum(col) for col in zip(*(h.latency_hist for h in hours), strict=True)]
        assert row.latency_hist == merged
    assert daily["gpt-4o"].events == 15
    assert sum(daily["gpt-4o"].latency_hist) == 15
