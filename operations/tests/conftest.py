from __future__ import annotations

import pytest


@pytest.fixture
def clean_metrics(settings):
    """Request metrics live in Redis, which no test rollback undoes: start and end empty, and
    write every count at once (no 1-second buffer)."""
    from saasops import metrics
    from saasops.redis import client

    settings.METRICS_FLUSH_INTERVAL = 0

    def wipe() -> None:
        metrics.flush()
        redis = client()
        keys = [metrics.COUNTERS_KEY, metrics.LAST_SCRAPE_KEY, metrics.LAST_FLUSH_KEY, "saasops:alerts:active"]
        keys += list(redis.scan_iter(match="saasops:metrics:minute:*", count=1000))
        redis.delete(*keys)

    wipe()
    yield metrics
    wipe()


@pytest.fixture
def heartbeats():
    from saasops.celery import heartbeat_key, write_heartbeat
    from saasops.redis import client

    write_heartbeat("worker")
    write_heartbeat("beat")
    yield
    client().delete(heartbeat_key("beat"))
