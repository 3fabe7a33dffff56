"""Concurrent duplicates: the same batch sent by eight clients at once is stored once.

The threads commit for real (each has its own connection), so the test cleans up the rows
it made; they are confined to one hour, model and user that no other test uses."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from metering.ledger import events_record
from metering.models import MeterHourly, MeterUniqueDaily, UsageDaily, UsageEvent, UsageHourly, UsageUserDaily

pytestmark = pytest.mark.django_db(transaction=False)


@pytest.fixture
def hour():
    at = (timezone.now() - timedelta(days=60)).replace(hour=3, minute=0, second=0, microsecond=0)
    yield at

    def cleanup() -> None:  # its own connection: the test's transaction would roll the deletes back
        tenant_filter = {"tenant__slug": "tenant-a"}
        UsageEvent.objects.filter(event_id__startswith="conc-", **tenant_filter).delete()
        UsageHourly.objects.filter(model="conc-model", **tenant_filter).delete()
        UsageDaily.objects.filter(model="conc-model", **tenant_filter).delete()
        UsageUserDaily.objects.filter(user_ref="conc-user", **tenant_filter).delete()
        MeterHourly.objects.filter(hour__gte=at, hour__lt=at + timedelta(hours=1), **tenant_filter).delete()
        MeterUniqueDaily.objects.filter(day=at.date(), value="conc-user", **tenant_filter).delete()
        connection.close()

    thread = threading.Thread(target=cleanup)
    thread.start()
    thread.join()


def test_same_batch_from_eight_clients_counts_once(tenant_a, hour):
    batch = [
        {
            "id": f"conc-{i}",
            "tenant": "tenant-a",
            "type": "query",
            "timestamp": (hour + timedelta(minutes=i % 60)).isoformat(),
            "properties": {"model": "conc-model", "input_tokens": 10, "output_tokens": 1, "user": "conc-user"},
        }
        for i in range(200)
    ]
    accepted: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def client() -> None:
        try:
            barrier.wait()
            accepted.append(events_record(raw_events=batch).accepted)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(accepted) == 200
    assert UsageEvent.objects.filter(tenant=tenant_a, event_id__startswith="conc-").count() == 200
    rollup = UsageHourly.objects.get(tenant=tenant_a, model="conc-model")
    assert (rollup.events, rollup.input_tokens, rollup.output_tokens) == (200, 2000, 200)
    daily = UsageDaily.objects.get(tenant=tenant_a, model="conc-model")
    assert (daily.events, daily.input_tokens, daily.output_tokens) == (200, 2000, 200)
    assert daily.latency_hist == rollup.latency_hist
    assert UsageUserDaily.objects.get(tenant=tenant_a, user_ref="conc-user").events == 200
