"""Probes: /healthz (alive) and /readyz (database, Redis, Celery worker heartbeat)."""

import time

import pytest

from saasops.celery import heartbeat_key, write_heartbeat
from saasops.redis import client as redis_client

pytestmark = pytest.mark.django_db


def test_healthz_on_any_host(client):
    for host in ("localhost", "tenant-a.localhost", "10.1.2.3"):
        response = client.get("/healthz", HTTP_HOST=host)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


def test_readyz_ok_with_fresh_worker_heartbeat(client):
    write_heartbeat("worker")
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "redis", "celery_worker"}


def test_readyz_503_names_missing_worker(client):
    redis_client().delete(heartbeat_key("worker"))
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["celery_worker"]
    assert "no Celery worker heartbeat" in body["checks"]["celery_worker"]["error"]


def test_readyz_503_on_stale_worker_heartbeat(client, settings):
    redis_client().set(heartbeat_key("worker"), str(time.time() - 3600))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "limit 120 s" in response.json()["checks"]["celery_worker"]["error"]


def test_readyz_503_when_redis_unreachable(client, monkeypatch, tmp_path):
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    import saasops.redis

    dead = redis.Redis(unix_socket_path=str(tmp_path / "no-redis.sock"), retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(saasops.redis, "client", lambda: dead)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["redis", "celery_worker"]
    assert "ConnectionError" in body["checks"]["redis"]["error"]


def test_request_id_is_echoed_or_made(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"
    hostile = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert hostile["X-Request-ID"] != "bad id\nwith newline"
    assert len(hostile["X-Request-ID"]) == 32
