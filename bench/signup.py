"""Signup benchmark: time from the click on the verification link to the dashboard, with
1,000 tenants present.

    .venv/bin/python -m saasops.devstack exec --profile=bench -- .venv/bin/python bench/signup.py

1. Bring the database up (`bootstrap`) and top the standing population up to --population
   tenants (bench-0001 …, the same population bench/provisioning.py keeps).
2. Start a real Celery worker (a subprocess on the same database and Redis).
3. For each of --n signups (made with the signup service, as the form would): POST the
   verification link like the browser's confirm page does, then do what the progress page
   does — poll the status endpoint every 0.6 s until it answers with the hand-off address —,
   redeem the hand-off on the tenant host and load the dashboard. The clock runs from the
   POST to the dashboard's 200. Requests go through Django's full stack in this process
   (test client: middleware, sessions, tenant routing); provisioning runs in the worker.
4. Delete the measured tenants again (schemas dropped), print p50/p95/max and write
   bench/results/signup.json. Target: p95 < 5 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import POPULATION_PREFIX, ROOT, Timer, django_setup, postgres_version, say, summary, write_result  # noqa: E402

TARGET_P95_S = 5.0
POLL_S = 0.6  # what templates/lifecycle/progress.html waits between polls


def population_fill(population: int) -> int:
    from lifecycle.services import tenant_provision
    from tenants.models import Plan, Tenant

    plan = Plan.objects.get(code="growth")
    existing = set(Tenant.objects.filter(slug__startswith=POPULATION_PREFIX).values_list("slug", flat=True))
    missing = [f"{POPULATION_PREFIX}{i:04d}" for i in range(1, population + 1)]
    missing = [slug for slug in missing if slug not in existing]
    if missing:
        say(f"{len(existing)} population tenants present; creating {len(missing)} more")
    for n, slug in enumerate(missing, 1):
        tenant_provision(
            key=f"bench:{slug}", name=f"Bench {slug}", slug=slug, owner_email=f"owner@{slug}.bench.test", plan=plan
        )
        if n % 100 == 0:
            say(f"  {n}/{len(missing)} created")
    return len(missing)


def worker_start() -> subprocess.Popen[bytes]:
    from saasops.celery import heartbeat_key
    from saasops.redis import client as redis_client

    redis_client().delete(heartbeat_key("worker"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "saasops", "worker", "--pool=solo", "-l", "WARNING", "-n", "bench@%h"],
        cwd=ROOT,
        env=dict(os.environ),
    )
    deadline = time.monotonic() + 60
    while redis_client().get(heartbeat_key("worker")) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the Celery worker did not start")
        time.sleep(0.1)
    return proc


def one_signup(run: str, i: int) -> tuple[float, dict[str, float]]:
    from django.conf import settings
    from django.test import Client

    from lifecycle.signup import signup_start, verify_link
    from tenants.models import Plan

    slug = f"benchs-{run}-{i:02d}"
    signup = signup_start(
        email=f"founder@{slug}.bench.test",
        password="bench-Pass-2026-x",
        company=f"Bench Signup {i}",
        slug=slug,
        plan=Plan.objects.get(code="starter"),
    )
    assert signup is not None
    path = "/" + verify_link(signup).split("/", 3)[3]
    public = Client(HTTP_HOST=settings.BASE_DOMAIN)
    marks: dict[str, float] = {}
    started = time.perf_counter()
    response = public.post(path)
    assert response.status_code == 302, response.status_code
    marks["verified"] = time.perf_counter() - started
    status_url = response["Location"].rstrip("/") + "/status/"
    polls = 0
    while True:
        polls += 1
        body = public.get(status_url).json()
        if body.get("redirect"):
            break
        if body["state"] not in ("provisioning",):
            raise RuntimeError(f"signup {slug} ended as {body}")
        if time.perf_counter() - started > 60:
            raise RuntimeError(f"signup {slug} not ready after 60 s")
        time.sleep(POLL_S)
    marks["ready"] = time.perf_counter() - started
    target = body["redirect"].split("://", 1)[1]
    host, _, rest = target.partition("/")
    workspace = Client(HTTP_HOST=host.split(":")[0])
    landed = workspace.get("/" + rest)
    assert landed.status_code == 302, landed.status_code
    dashboard = workspace.get("/")
    assert dashboard.status_code == 200, dashboard.status_code
    total = time.perf_counter() - started
    marks["polls"] = polls
    return total, marks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--population", type=int, default=1000, help="tenants present before measuring (1000)")
    parser.add_argument("--n", type=int, default=30, help="signups measured (30)")
    args = parser.parse_args()
    os.environ.setdefault("EMAIL_URL", "dummymail://")  # links are read from the database here
    django_setup()
    from django.core.management import call_command

    from lifecycle.models import Signup
    from tenants.models import Tenant, User

    with Timer() as boot:
        call_command("bootstrap", verbosity=0)
    say(f"bootstrap {boot.seconds:.1f} s")
    with Timer() as fill_timer:
        filled = population_fill(args.population)
    tenants = Tenant.objects.count()
    say(f"{tenants} Tenant rows (incl. public, template)")

    run = uuid.uuid4().hex[:6]
    times: list[float] = []
    ready: list[float] = []
    worker = worker_start()
    try:
        one_signup(run, 0)  # warm-up: imports, connections, the worker's first task
        for i in range(1, args.n + 1):
            total, marks = one_signup(run, i)
            times.append(total)
            ready.append(marks["ready"])
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        from django.db import connection

        connection.set_schema_to_public()  # the test client left the connection on the last tenant
        with Timer() as cleanup:
            for tenant in Tenant.objects.filter(slug__startswith=f"benchs-{run}-"):
                Signup.objects.filter(tenant=tenant).delete()
                tenant.delete(force_drop=True)
            Signup.objects.filter(email__endswith=".bench.test", slug__startswith=f"benchs-{run}-").delete()
            User.objects.filter(email__startswith="founder@benchs-").filter(email__contains=run).delete()
        say(f"deleted the measured tenants again in {cleanup.seconds:.1f} s")

    connection.set_schema_to_public()
    stats = summary(times)
    ok = stats["p95"] < TARGET_P95_S
    say(
        f"verification click → dashboard with {args.population} tenants present: p50 {stats['p50']:.2f} s, "
        f"p95 {stats['p95']:.2f} s, max {stats['max']:.2f} s over {stats['n']} signups "
        f"(target p95 < {TARGET_P95_S} s: {'met' if ok else 'MISSED'})"
    )
    write_result(
        "signup",
        {
            "postgres": postgres_version(),
            "population": args.population,
            "tenant_rows": tenants,
            "population_created_this_run": filled,
            "population_fill_s": round(fill_timer.seconds, 1),
            "poll_interval_s": POLL_S,
            "click_to_dashboard_s": stats,
            "click_to_ready_s": summary(ready),
            "samples_s": [round(t, 3) for t in times],
            "target": {"p95_s": TARGET_P95_S, "met": ok},
        },
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
