"""Readiness checks: each passing, failing and skipped, stored with value and evidence, and a
failing audit emailing staff."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.core import mail
from django.core.management import call_command

from billing.models import Invoice, InvoiceStatus
from operations.models import AlertThresholds, ReadinessRun
from operations.services.readiness import (
    check_config_stable,
    check_cost_tracking,
    check_monitoring,
    check_multi_tenant,
    readiness_run,
)
from operations.services.reconciliation import reconciliation_run
from operations.tests.factories import MARCH, aws_bill, openai_bill, usage
from tenants.models import Domain, PlanLimit, Tenant, TenantConfigVersion, TenantEvent


@pytest.fixture
def two_needed(settings):
    settings.READINESS_MIN_ACTIVE_TENANTS = 2  # the test database has tenant-a and tenant-b


# --- 1. multi-tenant ----------------------------------------------------------------------------


def test_multi_tenant_passes_with_the_gate_refusing_the_probe(db, tenant_a, tenant_b, two_needed):
    outcome = check_multi_tenant()
    assert outcome.status == "pass", outcome.message
    probe = outcome.evidence["probe"]
    # The free plan includes 1,000 API calls (hard limit): 1,001 is refused twice with the same
    # usage seen, so the refusal admitted nothing.
    assert (probe["ok"], probe["meter"], probe["limit"], probe["requested"]) == (True, "api_calls", 1000, 1001)
    assert probe["statuses"] == [402, 402] and probe["used_before_and_after"] == [0.0, 0.0]
    assert outcome.evidence["active_tenants"] == 2 and outcome.evidence["working"] == 2
    probe_tenant = Tenant.objects.get(slug="readiness-probe")
    assert probe_tenant.plan.code == "free" and probe_tenant.status == "active"
    assert not probe_tenant.subscriptions.exists()  # never billed
    # The probe ran in its own tenant: the real tenants' gate counters were not touched.
    from metering.periods import quota_period
    from metering.quota import counter_value

    start, _ = quota_period(tenant=tenant_a, at=datetime.now(UTC))
    assert counter_value(tenant_id=tenant_a.pk, meter="api_calls", start=start) == 0.0
    # A second audit reuses the probe tenant.
    assert check_multi_tenant().status == "pass"
    assert Tenant.objects.filter(slug="readiness-probe").count() == 1


def test_multi_tenant_fails_below_ten_active_tenants(db, tenant_a, tenant_b):
    outcome = check_multi_tenant()
    assert outcome.status == "fail"
    assert "2 active tenants (at least 10 needed)" in outcome.message
    assert outcome.value.startswith("2 active tenants")


def test_multi_tenant_fails_when_a_domain_does_not_route(db, tenant_a, tenant_b, two_needed):
    Domain.objects.filter(tenant=tenant_b).delete()
    outcome = check_multi_tenant()
    assert outcome.status == "fail"
    assert outcome.evidence["domain_not_routed"] == ["tenant-b"]


def test_multi_tenant_fails_when_quota_is_not_enforced(db, tenant_a, tenant_b, two_needed):
    PlanLimit.objects.filter(plan__code="free").update(on_exceed="overage")
    outcome = check_multi_tenant()
    assert outcome.status == "fail" and "quota not enforced" in outcome.message


def test_multi_tenant_skipped_on_request(db):
    run = readiness_run(only=["multi_tenant"], skip=["multi_tenant"])
    result = run.results.get()
    assert (result.status, result.value) == ("skipped", "not run")


# --- 2. cost tracking ---------------------------------------------------------------------------


def test_cost_tracking_skipped_without_a_bill(db):
    outcome = check_cost_tracking()
    assert outcome.status == "skipped" and "No provider bill" in outcome.message


def test_cost_tracking_fails_when_bills_were_never_reconciled(db):
    openai_bill([("2025-03-05", "gpt-4o", 1, "1.00")])
    outcome = check_cost_tracking()
    assert outcome.status == "fail" and "2025-03" in outcome.message


def test_cost_tracking_passes_within_five_percent(db, tenant_a):
    usage(tenant_a, hour=MARCH, model="gpt-4o", calls=1, tokens=10, cost="95.00")
    openai_bill([("2025-03-05", "gpt-4o", 10, "100.00")])
    reconciliation_run(month=date(2025, 3, 1))
    outcome = check_cost_tracking()
    assert outcome.status == "pass"
    assert outcome.value == "2025-03: variance +5.00% (tracked 95.00, billed 100.00 USD)"
    assert outcome.evidence["variance"] == "0.050000"


def test_cost_tracking_fails_outside_five_percent_naming_contributors(db, tenant_a):
    usage(tenant_a, hour=MARCH, model="gpt-4o", calls=1, tokens=10, cost="94.00")
    openai_bill([("2025-03-05", "gpt-4o", 10, "100.00")])
    reconciliation_run(month=date(2025, 3, 1))
    outcome = check_cost_tracking()
    assert outcome.status == "fail"
    assert "gpt-4o (6.000000)" in outcome.message


def test_cost_tracking_skipped_when_only_infrastructure_was_billed(db, tenant_a):
    aws_bill([("2025-03-01", "AmazonEC2", "10.00")])
    reconciliation_run(month=date(2025, 3, 1))
    assert check_cost_tracking().status == "skipped"


# --- 3. configuration database ---------------------------------------------------------------------


def test_config_stable_passes_on_versioned_history(db, tenant_a):
    from tenants.config import config_version_create

    config_version_create(tenant=tenant_a, overrides={"max_tokens": 700}, note="raise")
    outcome = check_config_stable()
    assert outcome.status == "pass", outcome.message
    assert outcome.evidence["versions_recorded"] == 1 and outcome.evidence["config_changed_events"] == 1
    assert outcome.evidence["pending_public_migrations"] == []
    assert outcome.evidence["tenant_schemas_checked"] >= 3  # template, tenant-a, tenant-b


def test_config_stable_fails_on_a_gap_in_versions(db, tenant_a):
    TenantConfigVersion.objects.create(tenant=tenant_a, version=3, overrides={})
    outcome = check_config_stable()
    assert outcome.status == "fail" and "history incomplete for tenant-a" in outcome.message
    assert outcome.evidence["history_gaps"] == [{"tenant": "tenant-a", "versions": 2, "first": 1, "last": 3}]


def test_config_stable_fails_on_a_change_without_its_versioned_record(db, tenant_a):
    TenantEvent.objects.create(tenant=tenant_a, kind="config_changed", actor_type="staff", details={"version": 9})
    outcome = check_config_stable()
    assert outcome.status == "fail"
    assert outcome.evidence["changes_without_version"] == ["tenant-a v9"]


def test_config_stable_fails_on_a_version_written_without_its_audit_row(db, tenant_a):
    TenantConfigVersion.objects.create(tenant=tenant_a, version=2, overrides={"max_tokens": 5})
    outcome = check_config_stable()
    assert outcome.status == "fail" and outcome.evidence["versions_without_audit_row"] == ["tenant-a v2"]


def test_config_stable_fails_with_a_pending_migration(db, monkeypatch):
    from operations.services import readiness

    monkeypatch.setattr(readiness, "_pending_public_migrations", lambda: ["billing.0099_future"])
    outcome = check_config_stable()
    assert outcome.status == "fail" and "billing.0099_future" in outcome.message


def test_config_stable_skipped_on_request(db):
    assert readiness_run(only=["config_stable"], skip=["config_stable"]).results.get().status == "skipped"


# --- 4. monitoring ------------------------------------------------------------------------------------


def test_monitoring_passes(db, settings, clean_metrics, heartbeats):
    settings.DEBUG = True
    outcome = check_monitoring()
    assert outcome.status == "pass", outcome.message
    endpoint = outcome.evidence["metrics_endpoint"]
    assert endpoint["serving"] and endpoint["recorded"] and endpoint["status"] == 200
    assert outcome.evidence["values"]["requests"] >= 1  # the probe's own request, recorded
    assert endpoint["last_scrape_age_seconds"] is None  # the probe is not a scrape


def test_monitoring_probe_uses_the_token_in_production(db, settings, clean_metrics, heartbeats):
    settings.DEBUG = False
    settings.METRICS_TOKEN = "t" * 32
    outcome = check_monitoring()
    assert outcome.evidence["metrics_endpoint"]["status"] == 200 and outcome.status == "pass", outcome.message


def test_monitoring_fails_when_metrics_are_closed_in_production(db, settings, clean_metrics, heartbeats):
    settings.DEBUG = False
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = []
    outcome = check_monitoring()
    assert outcome.status == "fail" and "/metrics not serving: HTTP 403" in outcome.message


def test_monitoring_fails_without_a_beat_heartbeat(db, settings, clean_metrics, heartbeats):
    from saasops.celery import heartbeat_key
    from saasops.redis import client

    client().delete(heartbeat_key("beat"))
    outcome = check_monitoring()
    assert outcome.status == "fail" and "no beat heartbeat" in outcome.message


def test_monitoring_fails_on_unset_thresholds_and_on_breaches(db, tenant_a, clean_metrics, heartbeats):
    AlertThresholds.objects.update_or_create(pk=1, defaults={"latency_p95_max_ms": None, "failed_payments_max": 0})
    now = datetime.now(UTC)
    Invoice.objects.create(tenant=tenant_a, status=InvoiceStatus.PAYMENT_FAILED, period_start=now - timedelta(days=30),
                           period_end=now, currency="usd", total=100)  # fmt: skip
    for _ in range(25):
        clean_metrics.request_record(path="/api/v1/events", method="POST", status=500, seconds=0.01)
    outcome = check_monitoring()
    assert outcome.status == "fail"
    assert "alert thresholds not set: latency_p95_max_ms" in outcome.message
    assert "1 invoices in payment_failed > 0" in outcome.message
    assert set(outcome.evidence["breaches"]) == {"error_rate", "failed_payments"}


def test_monitoring_skipped_on_request(db):
    assert readiness_run(only=["monitoring"], skip=["monitoring"]).results.get().status == "skipped"


# --- the audit -------------------------------------------------------------------------------------------


def test_audit_stores_every_check_and_emails_staff_when_one_fails(
    db, django_capture_on_commit_callbacks, django_user_model
):
    django_user_model.objects.create_user(username="ops", email="ops@saasops.test", password="x", is_staff=True)
    django_user_model.objects.create_user(username="cust", email="cust@example.test", password="x")
    with django_capture_on_commit_callbacks(execute=True):
        run = readiness_run()
    assert run.status == "fail"
    assert {r.check_code: r.status for r in run.results.all()} == {
        "multi_tenant": "fail",  # two tenants, ten needed
        "cost_tracking": "skipped",
        "config_stable": "pass",
        "monitoring": "fail",  # no heartbeats in the test
    }
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert "ops@saasops.test" in message.to and "cust@example.test" not in message.to
    assert "multi_tenant" in message.subject and "Multi-tenant operational" in message.body
    run.refresh_from_db()
    assert "ops@saasops.test" in run.alerted_to


def test_passing_audit_sends_nothing(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run = readiness_run(only=["cost_tracking"])
    assert run.status == "pass" and mail.outbox == []  # skipped is not failing


def test_readiness_command(db, capsys):
    with pytest.raises(SystemExit) as exited:
        call_command("readiness", "--check", "cost_tracking", "--check", "multi_tenant")
    assert exited.value.code == 1
    out = capsys.readouterr().out
    assert "SKIP  Cost tracking accurate" in out and "FAIL  Multi-tenant operational" in out
    assert ReadinessRun.objects.get().trigger == "command"
    call_command("readiness", "--check", "cost_tracking")  # skipped only: exit 0


def test_schedule_is_installed_and_ensure_is_idempotent(db):
    from django_celery_beat.models import PeriodicTask

    from operations.services.schedules import schedules_ensure

    assert PeriodicTask.objects.get(name="operations: readiness audit (daily)").task == "operations.readiness_audit"
    PeriodicTask.objects.filter(name="operations: readiness audit (daily)").update(enabled=False)
    before = PeriodicTask.objects.count()
    schedules_ensure()
    schedules_ensure()
    assert PeriodicTask.objects.count() == before
    assert not PeriodicTask.objects.get(name="operations: readiness audit (daily)").enabled  # staff's change kept
