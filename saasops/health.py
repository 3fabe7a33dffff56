"""Liveness and readiness probes.

/healthz: the process answers. /readyz: PostgreSQL, Redis and a recent Celery worker
heartbeat; 503 with a JSON body naming what is down.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True}


def _check_redis() -> dict:
    from saasops.redis import client

    client().ping()
    return {"ok": True}


def _check_worker() -> dict:
    from saasops.celery import heartbeat_key
    from saasops.redis import client

    raw = client().get(heartbeat_key("worker"))
    if raw is None:
        return {"ok": False, "error": "no Celery worker heartbeat seen"}
    age = time.time() - float(raw)
    limit = settings.CELERY_WORKER_HEARTBEAT_MAX_AGE
    if age > limit:
        return {"ok": False, "error": f"last Celery worker heartbeat {age:.0f} s ago (limit {limit} s)"}
    return {"ok": True, "age_seconds": round(age, 1)}


CHECKS = {"database": _check_database, "redis": _check_redis, "celery_worker": _check_worker}


def readiness() -> dict[str, dict]:
    results: dict[str, dict] = {}
    for name, check in CHECKS.items():
        try:
            results[name] = check()
        except Exception as exc:  # a probe reports every failure; it never raises
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return results


def readyz(request: HttpRequest) -> JsonResponse:
    results = readiness()
    down = [name for name, result in results.items() if not result["ok"]]
    body = {"status": "ok" if not down else "unavailable", "down": down, "checks": results}
    return JsonResponse(body, status=200 if not down else 503)
