"""Provisioning benchmark: time `lifecycle.services.tenant_provision` end to end with
1,000 tenants already present.

    .venv/bin/python -m saasops.devstack exec --profile=bench -- .venv/bin/python bench/provisioning.py

1. Bring the database up (the project's `bootstrap` command).
2. Top the standing population up to --population tenants (bench-0001 …) with the real
   service, timing that too (only the tenants made in this run are timed: the population
   is kept in .devdata/bench/ and a later run reuses it).
3. Provision --extra more tenants one after another, timing each call, then delete them
   (schema dropped) so the population stays the same size.
4. Print p50/p95/max and write bench/results/provisioning.json. Target: p95 < 1 s.

--profile writes a cProfile of the measured calls to bench/results/provisioning.prof.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    POPULATION_PREFIX,
    RESULTS,
    Timer,
    django_setup,
    percentile,
    postgres_version,
    say,
    summary,
    write_result,
)

TARGET_P95_S = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--population", type=int, default=1000, help="tenants present before measuring (1000)")
    parser.add_argument("--extra", type=int, default=50, help="tenants provisioned and timed (50)")
    parser.add_argument("--profile", action="store_true", help="cProfile the measured calls")
    args = parser.parse_args()

    django_setup()
    from django.core.management import call_command
    from django.db import connection

    from lifecycle.services import tenant_provision
    from tenants.models import Plan, Tenant

    with Timer() as boot:
        call_command("bootstrap", verbosity=0)
    say(f"bootstrap {boot.seconds:.1f} s")
    plan = Plan.objects.get(code="growth")

    def provision(slug: str) -> float:
        started = time.perf_counter()
        tenant_provision(
            key=f"bench:{slug}",
            name=f"Bench {slug}",
            slug=slug,
            owner_email=f"owner@{slug}.bench.test",
            plan=plan,
        )
        return time.perf_counter() - started

    # --- the standing population ------------------------------------------------------
    existing = set(Tenant.objects.filter(slug__startswith=POPULATION_PREFIX).values_list("slug", flat=True))
    wanted = [f"{POPULATION_PREFIX}{i:04d}" for i in range(1, args.population + 1)]
    missing = [slug for slug in wanted if slug not in existing]
    fill: list[float] = []
    if missing:
        say(f"{len(existing)} population tenants present; creating {len(missing)} more")
    with Timer() as fill_timer:
        for n, slug in enumerate(missing, 1):
            fill.append(provision(slug))
            if n % 100 == 0 or n == len(missing):
                recent = fill[-100:]
                say(
                    f"  {n}/{len(missing)} created; last {len(recent)}: p50 {percentile(recent, 50):.3f} s, "
                    f"p95 {percentile(recent, 95):.3f} s"
                )
    total_tenants = Tenant.objects.count()
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_namespace")
        schemas = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM pg_class")
        relations = cur.fetchone()[0]
    say(f"{total_tenants} Tenant rows (incl. public, template), {schemas} schemas, {relations} relations in pg_class")

    # --- the measured extra tenants ------------------------------------------------------
    run = uuid.uuid4().hex[:6]
    slugs = [f"benchx-{run}-{i:02d}" for i in range(1, args.extra + 1)]
    times: list[float] = []
    profiler = cProfile.Profile() if args.profile else None
    try:
        for slug in slugs:
            if profiler:
                profiler.enable()
            times.append(provision(slug))
            if profiler:
                profiler.disable()
    finally:
        with Timer() as cleanup:
            for tenant in Tenant.objects.filter(slug__in=slugs):
                tenant.delete(force_drop=True)
        say(f"deleted the {len(slugs)} measured tenants again in {cleanup.seconds:.1f} s")
    if profiler:
        RESULTS.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(RESULTS / "provisioning.prof")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)

    stats = summary(times)
    ok = stats["p95"] < TARGET_P95_S
    say(
        f"provisioning with {args.population} tenants present: p50 {stats['p50']:.3f} s, p95 {stats['p95']:.3f} s, "
        f"max {stats['max']:.3f} s over {stats['n']} tenants "
        f"(target p95 < {TARGET_P95_S} s: {'met' if ok else 'MISSED'})"
    )
    write_result(
        "provisioning",
        {
            "postgres": postgres_version(),
            "population": args.population,
            "tenant_rows": total_tenants,
            "schemas": schemas,
            "pg_class_relations": relations,
            "bootstrap_s": round(boot.seconds, 2),
            "population_created_this_run": len(fill),
            "population_fill_s": round(fill_timer.seconds, 1),
            "population_fill": summary(fill) if fill else None,
            "provision_s": stats,
            "provision_samples_s": [round(t, 4) for t in times],
            "target": {"p95_s": TARGET_P95_S, "met": ok},
        },
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
