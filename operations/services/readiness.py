"""Readiness audit: four checks, each stored with pass/fail/skipped, the measured value and
the evidence; staff are emailed when one fails.

1. multi_tenant   — enough active tenants, each with a routing domain and a migrated schema,
                    and the quota gate proven to refuse an over-limit request (live probe).
2. cost_tracking  — the last reconciled month within ±5% (skipped when no bill is imported).
3. config_stable  — config changed only through versioned records, history complete, no
                    pending migrations (public schema and every tenant schema).
4. monitoring     — /metrics serving, request metrics being recorded, worker and beat
                    heartbeats fresh, alert thresholds configured and not crossed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from operations.models import BillLine, CheckStatus, ReadinessResult, ReadinessRun, ReconciliationStatus, Trigger
from operations.selectors import reconciliation_latest
from tenants.models import User

log = logging.getLogger(__name__)

ACTIVE_STATUSES = ("trialing", "active", "past_due")


@dataclass
class Outcome:
    status: str
    value: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)


def passed(value: str, message: str, **evidence: Any) -> Outcome:
    return Outcome(CheckStatus.PASS, value, message, evidence)


def failed(value: str, message: str, **evidence: Any) -> Outcome:
    return Outcome(CheckStatus.FAIL, value, message, evidence)


def skipped(value: str, message: str, **evidence: Any) -> Outcome:
    return Outcome(CheckStatus.SKIPPED, value, message, evidence)


# --- 1. multi-tenant operational -----------------------------------------------------------------


def min_active_tenants() -> int:
    return int(getattr(settings, "READINESS_MIN_ACTIVE_TENANTS", 10))


def check_multi_tenant() -> Outcome:
    from operations.finance import PROBE_SLUG
    from operations.services.probe import quota_probe
    from tenants.migrate_fast import scan_schemas
    from tenants.models import Domain, Tenant
    from tenants.services import tenant_host

    tenants = list(
        Tenant.objects.customers()
        .filter(status__in=ACTIVE_STATUSES)
        .exclude(slug=PROBE_SLUG)
        .order_by("slug")
        .values_list("pk", "slug", "schema_name")
    )
    hosts = {tenant_host(slug=slug): pk for pk, slug, _ in tenants}
    routed = dict(Domain.objects.filter(domain__in=list(hosts)).values_list("domain", "tenant_id"))
    bad_domain = sorted(host.split(".")[0] for host, pk in hosts.items() if routed.get(host) != pk)
    scan = scan_schemas([schema for _, _, schema in tenants])
    by_schema = {schema: slug for _, slug, schema in tenants}
    no_schema = sorted(by_schema[s] for s in scan.absent)
    behind = sorted(by_schema[s] for s in scan.behind)
    working = len(tenants) - len(set(bad_domain) | set(no_schema) | set(behind))
    probe = quota_probe()
    minimum = min_active_tenants()
    value = f"{len(tenants)} active tenants, {working} with a working domain and schema; gate probe: {probe['result']}"
    evidence = {
        "active_tenants": len(tenants),
        "minimum": minimum,
        "working": working,
        "domain_not_routed": bad_domain,
        "schema_missing": no_schema,
        "schema_behind": behind,
        "probe": probe,
    }
    problems = []
    if len(tenants) < minimum:
        problems.append(f"{len(tenants)} active tenants (at least {minimum} needed)")
    if bad_domain:
        problems.append(f"domain not routed for {', '.join(bad_domain[:10])}")
    if no_schema:
        problems.append(f"schema missing for {', '.join(no_schema[:10])}")
    if behind:
        problems.append(f"schema not migrated for {', '.join(behind[:10])}")
    if not probe["ok"]:
        problems.append(f"quota not enforced: {probe['result']}")
    if problems:
        return failed(value, "; ".join(problems), **evidence)
    return passed(
        value, "Every active tenant routes and has a migrated schema; the gate refused the probe.", **evidence
    )


# --- 2. cost tracking accurate ---------------------------------------------------------------------


def check_cost_tracking() -> Outcome:
    run = reconciliation_latest()
    if run is None:
        if BillLine.objects.exists():
            months = sorted({m.strftime("%Y-%m") for m in BillLine.objects.values_list("month", flat=True)})
            return failed(
                "not reconciled", f"bills imported for {', '.join(months)} but never reconciled", months=months
            )
        return skipped("no bill imported", "No provider bill has been imported yet (admin → Provider bills).")
    month = run.month.strftime("%Y-%m")
    evidence = {
        "run": run.pk,
        "month": month,
        "tracked_cost": f"{run.tracked_cost:f}",
        "actual_cost": f"{run.actual_cost:f}",
        "variance": None if run.variance is None else f"{run.variance:f}",
        "tolerance": f"{run.tolerance:f}",
        "providers": run.providers,
        "contributors": run.contributors,
    }
    if run.status == ReconciliationStatus.NOT_APPLICABLE:
        return skipped(
            f"{month}: no model cost billed", "The last reconciled month has infrastructure cost only.", **evidence
        )
    shown = "n/a" if run.variance is None else f"{run.variance * 100:+.2f}%"
    value = f"{month}: variance {shown} (tracked {run.tracked_cost:.2f}, billed {run.actual_cost:.2f} USD)"
    if run.status == ReconciliationStatus.PASSED:
        return passed(value, f"Within ±{run.tolerance * 100:.0f}%.", **evidence)
    top = ", ".join(f"{c['item']} ({c['difference']})" for c in run.contributors.get("items", [])[:3])
    return failed(
        value, f"Outside ±{run.tolerance * 100:.0f}%; biggest differences: {top or 'see the run'}.", **evidence
    )


# --- 3. configuration database stable ----------------------------------------------------------------


def _pending_public_migrations() -> list[str]:
    from django.db.migrations.executor import MigrationExecutor

    connection.set_schema_to_public()  # type: ignore[attr-defined]
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _ in plan]


def check_config_stable(*, days: int = 30) -> Outcome:
    from tenants.migrate_fast import scan_schemas
    from tenants.models import Tenant, TenantConfigVersion, TenantEvent

    since = timezone.now() - timedelta(days=days)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.slug, count(v.id), min(v.version), max(v.version) FROM tenants_tenant t "
            "LEFT JOIN tenants_tenantconfigversion v ON v.tenant_id = t.id WHERE t.kind = 'customer' "
            "GROUP BY t.slug HAVING count(v.id) = 0 OR min(v.version) <> 1 OR max(v.version) <> count(v.id) "
            "ORDER BY t.slug"
        )
        gaps = [{"tenant": s, "versions": n, "first": lo, "last": hi} for s, n, lo, hi in cursor.fetchall()]
        cursor.execute(
            "SELECT t.slug, v.version FROM tenants_tenantconfigversion v JOIN tenants_tenantconfigversion p "
            "ON p.tenant_id = v.tenant_id AND p.version = v.version - 1 JOIN tenants_tenant t ON t.id = v.tenant_id "
            "WHERE v.created_at >= %s AND v.created_at < p.created_at ORDER BY 1, 2",
            [since],
        )
        out_of_order = [f"{slug} v{version}" for slug, version in cursor.fetchall()]
    recent_versions = set(
        TenantConfigVersion.objects.filter(created_at__gte=since, version__gt=1).values_list("tenant_id", "version")
    )
    events = list(
        TenantEvent.objects.filter(kind="config_changed", created_at__gte=since).values_list("tenant_id", "details")
    )
    audited = {(t, d.get("version")) for t, d in events if isinstance(d, dict)}
    all_versions = set(
        TenantConfigVersion.objects.filter(tenant_id__in={t for t, _ in audited}).values_list("tenant_id", "version")
    )
    slugs = dict(Tenant.objects.values_list("pk", "slug"))
    unversioned = sorted(f"{slugs.get(t, t)} v{v}" for t, v in audited - all_versions)
    unaudited = sorted(f"{slugs.get(t, t)} v{v}" for t, v in recent_versions - audited)
    pending_public = _pending_public_migrations()
    schemas = list(Tenant.objects.exclude(schema_name="public").values_list("schema_name", flat=True))
    scan = scan_schemas(schemas)
    behind = {schema: [f"{a}.{n}" for a, n in keys[:3]] for schema, keys in scan.missing.items()}
    evidence = {
        "days": days,
        "versions_recorded": len(recent_versions),
        "config_changed_events": len(events),
        "history_gaps": gaps[:20],
        "changes_without_version": unversioned[:20],
        "versions_without_audit_row": unaudited[:20],
        "versions_out_of_order": out_of_order[:20],
        "pending_public_migrations": pending_public[:20],
        "tenant_schemas_checked": scan.checked,
        "tenant_schemas_behind": dict(list(behind.items())[:20]),
        "tenant_schemas_missing": scan.absent[:20],
    }
    value = (
        f"{len(recent_versions)} config version(s) in {days} days; {len(gaps)} gap(s); "
        f"{len(pending_public)} public and {len(behind) + len(scan.absent)} tenant schema(s) pending"
    )
    problems = []
    if gaps:
        problems.append(f"history incomplete for {', '.join(g['tenant'] for g in gaps[:5])}")
    if unversioned:
        problems.append(f"config changes with no versioned record: {', '.join(unversioned[:5])}")
    if unaudited:
        problems.append(f"versions without their config_changed audit row: {', '.join(unaudited[:5])}")
    if out_of_order:
        problems.append(f"versions recorded out of order: {', '.join(out_of_order[:5])}")
    if pending_public:
        problems.append(f"pending migrations in the public schema: {', '.join(pending_public[:5])}")
    if behind or scan.absent:
        problems.append(f"tenant schemas not migrated: {', '.join([*behind, *scan.absent][:5])}")
    if problems:
        return failed(value, "; ".join(problems), **evidence)
    return passed(value, "Every change is a versioned record with its audit row; nothing to migrate.", **evidence)


# --- 4. production monitoring ----------------------------------------------------------------------


def check_monitoring() -> Outcome:
    from operations.services.monitoring import thresholds_evaluate
    from operations.services.probe import metrics_probe
    from saasops import metrics

    probe = metrics_probe()
    ages = metrics.heartbeat_ages()
    limit = settings.CELERY_WORKER_HEARTBEAT_MAX_AGE
    report = thresholds_evaluate()
    evidence = {
        "metrics_endpoint": probe,
        "heartbeat_age_seconds": {k: None if v is None else round(v, 1) for k, v in ages.items()},
        "heartbeat_max_age": limit,
        "values": report.values,
        "thresholds": report.thresholds,
        "breaches": report.breaches,
    }
    problems = []
    if not probe["serving"]:
        problems.append(f"/metrics not serving: {probe['detail']}")
    if not probe["recorded"]:
        problems.append("requests are not being recorded (the probe's request was not counted)")
    for role, age in ages.items():
        if age is None:
            problems.append(f"no {role} heartbeat")
        elif age > limit:
            problems.append(f"{role} heartbeat {age:.0f} s old (limit {limit} s)")
    if report.unset:
        problems.append(f"alert thresholds not set: {', '.join(report.unset)}")
    problems.extend(report.breaches.values())
    rate = report.values["error_rate"]
    p95 = report.values["latency_p95_ms"]
    value = (
        f"/metrics {'serving' if probe['serving'] else 'down'}; heartbeats "
        + ", ".join(f"{r} {'-' if a is None else f'{a:.0f} s'}" for r, a in ages.items())
        + f"; error rate {'-' if rate is None else f'{rate:.2%}'}, p95 {'-' if p95 is None else f'{p95:.0f} ms'}"
    )
    if problems:
        return failed(value, "; ".join(problems), **evidence)
    return passed(value, "Metrics served and recorded, heartbeats fresh, thresholds set and not crossed.", **evidence)


CHECKS: dict[str, tuple[str, Callable[[], Outcome]]] = {
    "multi_tenant": ("Multi-tenant operational", check_multi_tenant),
    "cost_tracking": ("Cost tracking accurate", check_cost_tracking),
    "config_stable": ("Configuration database stable", check_config_stable),
    "monitoring": ("Production monitoring", check_monitoring),
}


def readiness_run(
    *,
    trigger: str = Trigger.SCHEDULE,
    user: User | None = None,
    only: list[str] | None = None,
    skip: list[str] | None = None,
) -> ReadinessRun:
    """Run the checks (all, or `only` these) and store the run with one result per check.
    Checks in `skip` (default: settings.READINESS_SKIP_CHECKS) are stored as skipped, saying
    so. A check that crashes is a failure with the error as its evidence. When any check
    fails, staff are emailed once the run is stored (after commit)."""
    codes = [code for code in CHECKS if not only or code in only]
    skip = list(getattr(settings, "READINESS_SKIP_CHECKS", [])) if skip is None else skip
    started = timezone.now()
    outcomes: dict[str, tuple[Outcome, float]] = {}
    for code in codes:
        began = time.perf_counter()
        try:
            if code in skip:
                outcome = skipped("not run", "Skipped on request (READINESS_SKIP_CHECKS or --skip).")
            else:
                outcome = CHECKS[code][1]()
        except Exception as exc:
            log.exception("readiness check %s crashed", code)
            outcome = failed("error", f"the check could not run: {type(exc).__name__}: {exc}"[:500])
        finally:
            connection.set_schema_to_public()  # type: ignore[attr-defined]
        outcomes[code] = (outcome, time.perf_counter() - began)
    return _store(trigger=trigger, user=user, started=started, outcomes=outcomes)


@transaction.atomic
def _store(
    *, trigger: str, user: User | None, started: datetime, outcomes: dict[str, tuple[Outcome, float]]
) -> ReadinessRun:
    failing = [code for code, (outcome, _) in outcomes.items() if outcome.status == CheckStatus.FAIL]
    run = ReadinessRun.objects.create(
        trigger=trigger,
        triggered_by=user,
        status=CheckStatus.FAIL if failing else CheckStatus.PASS,
        started_at=started,
        finished_at=timezone.now(),
    )
    ReadinessResult.objects.bulk_create(
        ReadinessResult(
            run=run,
            check_code=code,
            status=outcome.status,
            value=outcome.value[:300],
            message=outcome.message,
            evidence=outcome.evidence,
            seconds=round(seconds, 3),
        )
        for code, (outcome, seconds) in outcomes.items()
    )
    if failing:
        transaction.on_commit(lambda: readiness_alert(run_id=run.pk))
    return run


def readiness_alert(*, run_id: int) -> list[str]:
    """Email staff about the failing checks of a run (once: the run records who was emailed)."""
    from operations.services.alerts import alert_send

    run = ReadinessRun.objects.get(pk=run_id)
    if run.alerted_to:
        return run.alerted_to.split(", ")
    failing = list(run.results.filter(status=CheckStatus.FAIL).order_by("id"))
    if not failing:
        return []
    lines = [f"Readiness audit of {run.started_at:%Y-%m-%d %H:%M} UTC: {len(failing)} check(s) failing.", ""]
    for result in failing:
        lines += [f"- {CHECKS.get(result.check_code, (result.check_code,))[0]}: {result.value}", f"  {result.message}"]
    sent = alert_send(
        subject=f"readiness: {', '.join(r.check_code for r in failing)} failing",
        lines=lines,
        link_name="admin:operations_readinessrun_changelist",
    )
    if sent:
        ReadinessRun.objects.filter(pk=run.pk).update(alerted_to=", ".join(sent))
    return sent
