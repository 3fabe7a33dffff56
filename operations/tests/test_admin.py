"""Admin pages: they load for staff, are refused to non-staff, and their forms and exports work."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from operations.models import BillLine, ProviderBill, ReadinessRun, ReconciliationRun
from operations.services.reconciliation import reconciliation_run
from operations.tests.factories import MARCH, openai_bill, usage
from operations.tests.test_importers import OPENAI_CSV


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser(username="boss", email="boss@saasops.test", password="x")


@pytest.fixture
def admin_client(client_for, staff):
    return client_for(None, staff)


@pytest.fixture
def reconciled(db, tenant_a, tenant_b):
    usage(tenant_a, hour=MARCH, model="gpt-4o", calls=3, tokens=300, cost="3.00")
    usage(tenant_b, hour=MARCH, model="gpt-4o", calls=1, tokens=100, cost="1.00")
    openai_bill([("2025-03-05", "gpt-4o", 400, "4.10")])
    return reconciliation_run(month=date(2025, 3, 1))


PAGES = [
    "admin:operations_providerbill_changelist",
    "admin:operations_providerbill_import",
    "admin:operations_billline_changelist",
    "admin:operations_reconciliationrun_changelist",
    "admin:operations_readinessrun_changelist",
    "admin:operations_metricssnapshot_changelist",
    "admin:operations_alertthresholds_change",
    "admin:app_list",
]


def _url(name: str) -> str:
    if name == "admin:app_list":
        return reverse(name, kwargs={"app_label": "operations"}, urlconf="saasops.urls_public")
    if name == "admin:operations_alertthresholds_change":
        from operations.models import AlertThresholds

        return reverse(name, args=[AlertThresholds.current().pk], urlconf="saasops.urls_public")
    return reverse(name, urlconf="saasops.urls_public")


@pytest.mark.parametrize("name", PAGES)
def test_pages_load_for_staff(db, admin_client, reconciled, name):
    response = admin_client.get(_url(name))
    assert response.status_code == 200, response.content[:500]


@pytest.mark.parametrize("name", PAGES)
def test_pages_refused_to_non_staff(db, client_for, owner_a, name):
    response = client_for(None, owner_a).get(_url(name))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_without_permission_is_refused(db, client_for, django_user_model):
    clerk = django_user_model.objects.create_user(username="clerk", email="c@x.test", password="x", is_staff=True)
    response = client_for(None, clerk).get(_url("admin:operations_metricssnapshot_changelist"))
    assert response.status_code == 403


def test_run_detail_and_csv_export(db, admin_client, reconciled, tenant_a, tenant_b):
    page = admin_client.get(reverse("admin:operations_reconciliationrun_change", args=[reconciled.pk],
                                    urlconf="saasops.urls_public"))  # fmt: skip
    assert page.status_code == 200 and b"tenant-a" in page.content and b"gpt-4o" in page.content
    export = admin_client.get(
        reverse("admin:operations_reconciliationrun_export", args=[reconciled.pk], urlconf="saasops.urls_public")
    )
    assert export["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(export.content.decode())))
    assert rows[0] == ["tenant_id", "tracked_cost", "actual_cost", "variance"]
    # 4.10 billed for gpt-4o split by tokens 300 : 100 -> 3.075 and 1.025.
    assert sorted(rows[1:]) == sorted([
        [str(tenant_a.pk), "3.000000", "3.075000", "0.024390"],
        [str(tenant_b.pk), "1.000000", "1.025000", "0.024390"],
    ])  # fmt: skip


def test_upload_form_imports_and_refuses_malformed_files(db, admin_client):
    url = _url("admin:operations_providerbill_import")
    good = SimpleUploadedFile("openai.csv", OPENAI_CSV, content_type="text/csv")
    response = admin_client.post(url, {"file": good, "provider": ""})
    assert response.status_code == 302
    assert ProviderBill.objects.get().lines_added == 3
    bad = SimpleUploadedFile("bad.csv", b"date,model,tokens,cost\n2026-10-01,gpt-4o,1,1\n2026-10-02,gpt-4o,1,x\n")
    response = admin_client.post(url, {"file": bad, "provider": "openai"})
    assert response.status_code == 200
    assert (
        "row 3, column &#x27;cost&#x27;" in response.content.decode()
        or "row 3, column 'cost'" in response.content.decode()
    )
    assert BillLine.objects.count() == 3


def test_run_now_buttons(db, admin_client, reconciled, settings):
    settings.DEBUG = True
    response = admin_client.post(_url("admin:operations_reconciliationrun_run"), {"month": "2025-03"})
    assert response.status_code == 302 and ReconciliationRun.objects.count() == 2  # forced: a new run
    response = admin_client.post(_url("admin:operations_readinessrun_run"), {"check": "cost_tracking"})
    assert response.status_code == 302
    run = ReadinessRun.objects.get()
    assert run.trigger == "admin" and run.results.get().check_code == "cost_tracking"
    page = admin_client.get(_url("admin:operations_readinessrun_changelist"))
    assert b'data-check="cost_tracking"' in page.content and b"#15803d" in page.content  # green: passed
    detail = admin_client.get(
        reverse("admin:operations_readinessrun_change", args=[run.pk], urlconf="saasops.urls_public")
    )
    assert detail.status_code == 200 and b"evidence" in detail.content


def test_dashboard_charts_and_exports(db, admin_client):
    page = admin_client.get(_url("admin:operations_metricssnapshot_changelist"))
    content = page.content.decode()
    assert content.count("<svg") >= 3 and "http://" not in content.split("<svg", 1)[1].split("</svg>")[0].replace(
        "http://www.w3.org/2000/svg", ""
    )
    assert 'src="http' not in content and 'href="http' not in content  # nothing loaded from elsewhere
    export = _url("admin:operations_metricssnapshot_export")
    months = list(csv.reader(io.StringIO(admin_client.get(export).content.decode())))
    assert months[0][:3] == ["month", "mrr", "arr"] and len(months) == 13
    for table in ("plans", "tenants", "snapshots"):
        response = admin_client.get(export, {"table": table})
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert admin_client.get(export, {"table": "nope"}).status_code == 400
    snap = admin_client.post(_url("admin:operations_metricssnapshot_snapshot"))
    assert snap.status_code == 302


def test_full_audit_from_admin_keeps_the_admin_urls(db, admin_client, settings, clean_metrics, heartbeats):
    # The monitoring check makes a request of its own inside this one; the redirect after it
    # must still resolve on the public host's URLs.
    settings.DEBUG = True
    response = admin_client.post(_url("admin:operations_readinessrun_run"), {"check": "monitoring"})
    assert response.status_code == 302 and "/admin/operations/readinessrun/" in response["Location"]
    assert ReadinessRun.objects.get().results.get().status == "pass"
