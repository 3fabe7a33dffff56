"""Migrate benchmark: every tenant schema up to date, with 1,000 tenants present.

    .venv/bin/python -m saasops.devstack exec --profile=bench -- .venv/bin/python bench/migrate.py

Needs the tenant population bench/provisioning.py makes (run that first; `make bench` does).

1. `manage.py migrate_schemas --tenant` (django-tenants' standard executor) with nothing to
   do: wall time of the whole command. Target: under 60 s for 1,000 tenants.
2. `manage.py migrate_tenants` (tenants/migrate_fast.py) with nothing to do: wall time.
3. A deploy with a new shared-app migration: every tenant schema lacks one (its row deleted;
   a shared app's migration does nothing in tenant schemas but record itself), then
   `migrate_tenants`: wall time, and a check that everything is recorded.
4. `migrate_tenants --full` with --behind schemas lacking it: a real migrate each (the cost
   of a tenant-app migration per schema), and a check that exactly those were migrated.
5. Catalog facts for docs/SCALING.md: tables, lock table size, whether pg_dump still works.
Writes bench/results/migrate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Timer, django_setup, postgres_version, say, write_result  # noqa: E402

TARGET_S = 60.0
PROBE = ("sessions", "0001_initial")  # shared app: a no-op in tenant schemas apart from its row


def manage(*args: str) -> tuple[float, str]:
    with Timer() as timer:
        proc = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"manage.py {' '.join(args)} failed (exit {proc.returncode})")
    return timer.seconds, proc.stdout + proc.stderr


def catalog_facts() -> dict[str, object]:
    """Tables, lock-table capacity, and whether a whole-database pg_dump (which locks every
    table in one transaction) still works at this size."""
    import shutil
    from urllib.parse import parse_qs, urlparse

    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_class WHERE relkind IN ('r', 'p')")
        tables = cur.fetchone()[0]
        cur.execute(
            "SELECT current_setting('max_locks_per_transaction')::int, current_setting('max_connections')::int, "
            "current_setting('max_prepared_transactions')::int"
        )
        locks, conns, prepared = cur.fetchone()
        try:
            cur.execute("SELECT setting FROM pg_config WHERE name = 'BINDIR'")
            bindir = cur.fetchone()[0]
        except Exception:
            bindir = ""
    connection.close()
    facts: dict[str, object] = {
        "tables": tables,
        "max_locks_per_transaction": locks,
        "lock_table_slots": locks * (conns + prepared),
    }
    pg_dump = (
        str(Path(bindir) / "pg_dump") if bindir and (Path(bindir) / "pg_dump").exists() else shutil.which("pg_dump")
    )
    url = urlparse(os.environ.get("DATABASE_URL", ""))
    if pg_dump and url.path:
        host = parse_qs(url.query).get("host", [url.hostname or ""])[0]
        cmd = [pg_dump, "--schema-only", "-h", host, "-U", url.username or "postgres", url.path.lstrip("/")]
        if url.port:
            cmd += ["-p", str(url.port)]
        env = dict(os.environ, PGPASSWORD=url.password or "")
        with Timer() as timer:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        facts["pg_dump_schema_only"] = {
            "ok": proc.returncode == 0,
            "seconds": round(timer.seconds, 1),
            "ddl_mb": round(len(proc.stdout) / 2**20, 1),
            "error": proc.stderr.strip().splitlines()[-1][:300] if proc.returncode else "",
        }
    return facts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--behind", type=int, default=20, help="schemas made to lack a migration for step 4 (20)")
    parser.add_argument("--skip-standard", action="store_true", help="skip step 1 (django-tenants' migrate_schemas)")
    args = parser.parse_args()

    django_setup()
    from django.db import connection
    from django_tenants.utils import get_public_schema_name, quote_schema_name

    from tenants.migrate_fast import scan_schemas
    from tenants.models import Tenant

    schemas = list(
        Tenant.objects.exclude(schema_name=get_public_schema_name())
        .order_by("pk")
        .values_list("schema_name", flat=True)
    )
    customers = Tenant.objects.customers().count()
    say(f"{len(schemas)} tenant schemas ({customers} customer tenants + template)")
    if customers < 1000:
        say("fewer than 1,000 tenants: run bench/provisioning.py first for the figures the targets are about")
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_class")
        relations = cur.fetchone()[0]
        cur.execute("SELECT pg_database_size(current_database())")
        db_bytes = cur.fetchone()[0]
        cur.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
            ["tenant_template"],
        )
        per_tenant_relations = cur.fetchone()[0]
    connection.close()

    scan = scan_schemas(schemas)
    if scan.missing or scan.absent:
        say(f"{len(scan.missing)} schemas behind, {len(scan.absent)} missing: bringing them up to date first")
        manage("migrate_tenants", "-v", "0")
    connection.close()

    results: dict[str, object] = {
        "postgres": postgres_version(),
        "tenant_schemas": len(schemas),
        "customer_tenants": customers,
        "pg_class_relations": relations,
        "relations_per_tenant_schema": per_tenant_relations,
        "database_mb": round(db_bytes / 2**20, 1),
        "scan_in_process_s": round(scan.seconds, 3),
        "scan_queries": scan.queries,
    }

    # 1. django-tenants' standard executor, nothing to do.
    if not args.skip_standard:
        say(f"migrate_schemas --tenant (standard executor) over {len(schemas)} up-to-date schemas …")
        seconds, _ = manage("migrate_schemas", "--tenant", "--noinput", "-v", "0")
        say(
            f"migrate_schemas --tenant, no-op: {seconds:.1f} s ({seconds / len(schemas) * 1000:.0f} ms per schema; "
            f"django-tenants' own path, the baseline: the < {TARGET_S:.0f} s target is migrate_tenants')"
        )
        results["migrate_schemas_noop_s"] = round(seconds, 2)
        results["migrate_schemas_noop_ms_per_schema"] = round(seconds / len(schemas) * 1000, 1)

    # 2. migrate_tenants, nothing to do.
    seconds, output = manage("migrate_tenants")
    found = re.search(r"checked (\d+) tenant schemas in ([\d.]+) s \((\d+) queries\)", output)
    say(f"migrate_tenants, no-op: {seconds:.2f} s  [{found.group(0) if found else output.strip()}]")
    results["migrate_tenants_noop_s"] = round(seconds, 2)
    if found:
        results["migrate_tenants_scan_s"] = float(found.group(2))
        results["migrate_tenants_scan_queries"] = int(found.group(3))

    def forget(targets: list[str]) -> None:
        with connection.cursor() as cur:
            for schema in targets:
                cur.execute(
                    f"DELETE FROM {quote_schema_name(schema)}.django_migrations WHERE app = %s AND name = %s",  # noqa: S608
                    list(PROBE),
                )
        connection.close()

    tenants_only = [s for s in schemas if s != "tenant_template"]

    # 3. A deploy with a new shared-app migration: every tenant schema lacks it.
    forget(tenants_only)
    seconds, output = manage("migrate_tenants")
    found = re.search(r"recorded shared-app migrations in (\d+) schemas in ([\d.]+) s", output)
    still = scan_schemas(schemas)
    deploy_ok = bool(found) and int(found.group(1)) == len(tenants_only) and not still.missing
    say(
        f"migrate_tenants, all {len(tenants_only)} schemas lacking a shared-app migration: {seconds:.2f} s "
        f"(recorded in bulk: {found.group(0) if found else 'NO'}); nothing behind now: {not still.missing}"
    )
    results["migrate_tenants_shared_migration_all_schemas"] = {
        "schemas_behind": len(tenants_only),
        "seconds": round(seconds, 2),
        "record_s": float(found.group(2)) if found else None,
        "correct": deploy_ok,
    }

    # 4. Schemas that need a real migrate (--full forces it): the per-schema cost.
    behind = tenants_only[: args.behind]
    forget(behind)
    seconds, output = manage("migrate_tenants", "--full")
    migrated = re.findall(r"\] (\S+) migrated in", output)
    still = scan_schemas(schemas)
    correct = deploy_ok and sorted(migrated) == sorted(behind) and not still.missing
    say(
        f"migrate_tenants --full, {len(behind)} schemas behind: {seconds:.2f} s "
        f"({seconds / max(1, len(behind)):.2f} s per schema incl. start-up); migrated exactly those: "
        f"{sorted(migrated) == sorted(behind)}"
    )
    results["migrate_tenants_full_behind"] = {
        "schemas_behind": len(behind),
        "seconds": round(seconds, 2),
        "per_schema_s": round(seconds / max(1, len(behind)), 3),
        "migrated_exactly_those": sorted(migrated) == sorted(behind),
    }
    # 5. Catalog facts behind the schema-count limits (docs/SCALING.md).
    results["catalog"] = catalog_facts()
    say(f"catalog: {json.dumps(results['catalog'])}")

    best = min(float(results["migrate_tenants_noop_s"]), float(results.get("migrate_schemas_noop_s", 1e9)))
    results["target"] = {
        "noop_migrate_s": TARGET_S,
        "met_by": "migrate_tenants",
        "best_s": best,
        "met": best < TARGET_S,
    }
    write_result("migrate", results)
    return 0 if correct and best < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
