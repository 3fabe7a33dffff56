"""Dashboard benchmark: server time of the workspace's overview and usage pages for a tenant
with 5 million usage events.

    .venv/bin/python -m saasops.devstack exec --profile=bench -- .venv/bin/python bench/dashboard.py

1. Bootstrap; the tenant is bench/usage_api.py's mbench-usage (5,000,000 events over the last
   30 days, 8 departments, 400 users, every priced model, with their rollups). If it does not
   hold them yet they are loaded with usage_api.py's SQL loader (checked there against the
   ledger row by row) and kept for later runs.
2. Production settings (DEBUG=false). Each page is requested in-process through Django's
   full handler (middleware, session and membership, the view's queries, the template) as
   the tenant's owner: --warmup (5) requests, then --requests (60) timed ones. The tenant's
   8 departments have budgets it stays under, so the overview checks them on every visit. "Server time"
   is that handler time: what the server spends on the page, without network or browser.
   The pages: the overview, and the usage page in the variants that read the most —
   30 and 90 days, no breakdown and by model, department and user, each metric, and the CSV.
3. Target: p95 < 300 ms for every page. Writes bench/results/dashboard.json.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import django_setup, postgres_version, say, summary, write_result  # noqa: E402

TARGET_P95_MS = 300.0

PAGES: dict[str, str] = {
    "overview": "/",
    "usage_queries_30d": "/usage/",
    "usage_queries_90d_by_model": "/usage/?metric=queries&range=90&breakdown=model",
    "usage_tokens_30d_by_department": "/usage/?metric=tokens&range=30&breakdown=department",
    "usage_cost_30d_by_user": "/usage/?metric=cost&range=30&breakdown=user",
    "usage_latency_30d": "/usage/?metric=latency&range=30",
    "usage_latency_90d_by_model": "/usage/?metric=latency&range=90&breakdown=model",
    "usage_csv_cost_30d_by_department": "/usage/export.csv?metric=cost&range=30&breakdown=department",
}
# Past days' latency histograms are cached by content (workspace/selectors/latency.py); these
# are also timed with the cache emptied before every request (a first visit, or a day whose
# events changed).
COLD = {"usage_latency_30d", "usage_latency_90d_by_model"}


def forget_latency_cache() -> None:
    from saasops.redis import client

    keys = list(client().scan_iter(match="*ws-latency:*", count=1000))
    if keys:
        client().delete(*keys)


def production_env() -> None:
    """DEBUG=false as in production (no query log, cached templates); static files from the
    source folders, since the bench does not run collectstatic."""
    os.environ.update(
        {
            "DEBUG": "false",
            "SECRET_KEY": "bench-" + secrets.token_urlsafe(48),
            "SECURE_SSL_REDIRECT": "false",
            "BASE_DOMAIN": "localhost",
            "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        }
    )


def ensure_loaded(events: int) -> tuple[Any, dict[str, Any]]:
    """usage_api.py's tenant with `events` events and rollups (loaded once, then reused)."""
    from django.db import connection
    from usage_api import ROLLUP_TABLES, TENANT, ensure_tenant, forget, sql_load, sql_rollups

    tenant = ensure_tenant(TENANT)
    with connection.cursor() as cur:
        cur.execute("SELECT count(*), min(timestamp) FROM metering_usageevent WHERE tenant_id = %s", [tenant.pk])
        have, first = cur.fetchone()
        cur.execute("SELECT coalesce(sum(events), 0) FROM metering_usagehourly WHERE tenant_id = %s", [tenant.pk])
        rolled = cur.fetchone()[0]
    # usage_api.py reloads when the first event is older than 30 days; the pages read up to 90
    # days, so events up to two days past that are still a fair picture (and spare a reload).
    fresh = first is not None and first > datetime.now(UTC) - timedelta(days=32)
    if have == events and rolled == events and fresh:
        say(f"{TENANT} already holds {have:,} events with rollups (loaded by an earlier run)")
        return tenant, {"reused": True, "events": have}
    say(f"loading {events:,} events into {TENANT} with bench/usage_api.py's SQL loader (once)")
    forget([tenant.pk])
    end = datetime.now(UTC) - timedelta(minutes=10)
    load_s = sql_load(tenant.pk, events, end - timedelta(days=30), end, "ld-")
    roll_s = sql_rollups(tenant.pk)
    with connection.cursor() as cur:
        cur.execute("ANALYZE metering_usageevent")
        for table in ROLLUP_TABLES:
            cur.execute(f"ANALYZE {table}")
    return tenant, {"reused": False, "events": events, "events_s": round(load_s, 1), "rollups_s": round(roll_s, 1)}


def time_page(
    client: Any, path: str, warmup: int, requests: int, cold: bool = False
) -> tuple[list[float], dict[str, Any]]:
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    for _ in range(warmup):
        response = client.get(path)
        if response.status_code != 200:
            raise SystemExit(f"dashboard bench: {path} answered {response.status_code}")
    timings = []
    for _ in range(requests):
        if cold:
            forget_latency_cache()
        started = time.perf_counter()
        response = client.get(path)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    sql_seconds = [0.0]

    def timed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            sql_seconds[0] += time.perf_counter() - began

    reset_queries()
    with CaptureQueriesContext(connection) as queries, connection.execute_wrapper(timed):
        response = client.get(path)
    sql_ms = sql_seconds[0] * 1000
    return timings, {"queries": len(queries.captured_queries), "sql_ms_one_request": round(sql_ms, 1),
                     "bytes": len(response.content)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000_000, help="events of the tenant (5,000,000)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests per page (5)")
    parser.add_argument("--requests", type=int, default=60, help="timed requests per page (60)")
    args = parser.parse_args()

    production_env()
    django_setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import override_settings

    from tenants.services import tenant_host

    call_command("bootstrap", verbosity=0)
    tenant, load = ensure_loaded(args.events)
    results: dict[str, Any] = {"postgres": postgres_version(), "load": load, "targets": {}, "pages": {}}
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM metering_usagehourly WHERE tenant_id = %s", [tenant.pk])
        hourly = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM metering_usageuserdaily WHERE tenant_id = %s", [tenant.pk])
        userdaily = cur.fetchone()[0]
    results["rollup_rows"] = {"usagehourly": hourly, "usageuserdaily": userdaily}
    say(f"rollup rows of {tenant.slug}: {hourly:,} hourly, {userdaily:,} user-days")

    # Departments with budgets the spend stays under: the overview then checks the budgets
    # (usage by department over the period) on every visit, its most expensive case.
    from django_tenants.utils import schema_context
    from usage_api import DEPARTMENTS

    from workspace.models import Department

    with schema_context(tenant.schema_name):
        for code in DEPARTMENTS:
            Department.objects.get_or_create(code=code, defaults={"name": code.title(), "monthly_budget_usd": 10**9})
    owner = tenant.memberships.get(role="owner").user
    static = {"staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    with override_settings(STORAGES={"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
                                     **static}):  # fmt: skip
        client = Client(HTTP_HOST=tenant_host(slug=tenant.slug))
        client.force_login(owner)
        runs = [(name, path, False) for name, path in PAGES.items()]
        runs += [(f"{name}_cold_cache", PAGES[name], True) for name in PAGES if name in COLD]
        for name, path, cold in runs:
            timings, facts = time_page(client, path, args.warmup, args.requests, cold=cold)
            stats = summary(timings)
            results["pages"][name] = {"path": path, "latency_ms": stats, **facts}
            met = stats["p95"] < TARGET_P95_MS
            results["targets"][name] = {"target_p95_ms": TARGET_P95_MS, "measured_p95_ms": stats["p95"], "met": met}
            say(f"{name}: p50 {stats['p50']:.1f} ms, p95 {stats['p95']:.1f} ms, max {stats['max']:.1f} ms "
                f"({facts['queries']} queries, {facts['sql_ms_one_request']} ms SQL)")  # fmt: skip
    write_result("dashboard", results)
    for name, t in results["targets"].items():
        say(f"{name}: p95 {t['measured_p95_ms']:.1f} ms (target < {TARGET_P95_MS:.0f} ms): "
            f"{'met' if t['met'] else 'MISSED'}")  # fmt: skip
    return 0 if all(t["met"] for t in results["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
