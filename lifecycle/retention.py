"""After a cancellation: the data is kept LIFECYCLE_RETENTION_DAYS (30) for an export, then
deleted.

Deletion drops the tenant's schema (everything that was the customer's alone) and
anonymises what accounting must keep: the tenant row stays (its invoices point at it) as
"Deleted tenant #<id>", its host names are removed, and its members are detached from it
(their accounts stay when they belong to other workspaces). Invoices, credit notes and
usage rollups stay for the books. A `deleted` history row and a TenantDeletion record say
when and what.
"""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_exists
from psycopg2 import sql

from billing.models import Invoice
from lifecycle.handoff import handoff_tokens_purge
from lifecycle.models import TenantDeletion
from metering.selectors import usage_daily
from tenants.models import Domain, Membership, Tenant, TenantStatus
from tenants.services import tenant_event_record

log = logging.getLogger(__name__)

USAGE_COLUMNS = ["date", "query_count", "tokens", "cost_usd", "latency_p95_ms"]
EXPORT_STATUSES = ("finalized", "paid", "payment_failed", "void")
MAX_QUERY_DAYS = 800  # usage_daily answers at most this many days per call


def retention_ends_at(tenant: Tenant) -> datetime | None:
    """When a cancelled tenant's data goes (None if it is not cancelled)."""
    if tenant.status != TenantStatus.CANCELLED:
        return None
    return tenant.status_changed_at + timedelta(days=settings.LIFECYCLE_RETENTION_DAYS)


def tenant_is_deleted(tenant: Tenant) -> bool:
    return TenantDeletion.objects.filter(tenant=tenant).exists()


# --- export ------------------------------------------------------------------------------------
def usage_csv(*, tenant: Tenant, start: date, end: date) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=USAGE_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    day = start
    while day <= end:
        chunk_end = min(end, day + timedelta(days=MAX_QUERY_DAYS - 1))
        for row in usage_daily(tenant_id=tenant.pk, start=day, end=chunk_end):
            writer.writerow(row)
        day = chunk_end + timedelta(days=1)
    return out.getvalue()


def export_build(*, tenant: Tenant) -> bytes:
    """The tenant's export as a zip: usage.csv (one row a day since the workspace was
    made) and each invoice the customer has seen as a PDF."""
    today = timezone.now().date()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("usage.csv", usage_csv(tenant=tenant, start=tenant.created_at.date(), end=today))
        invoices = Invoice.objects.filter(tenant=tenant, status__in=EXPORT_STATUSES).select_related("tenant")
        try:
            from billing.documents import invoice_pdf, invoice_pdf_filename
        except ImportError:  # documents are optional: the export still holds the usage
            invoice_pdf = None  # type: ignore[assignment]
        index = ["number,status,period_start,period_end,currency,total_minor"]
        for invoice in invoices.order_by("period_start", "pk"):
            index.append(
                f"{invoice.number},{invoice.status},{invoice.period_start:%Y-%m-%d},{invoice.period_end:%Y-%m-%d},"
                f"{invoice.currency},{invoice.total}"
            )
            if invoice_pdf is not None:
                archive.writestr(f"invoices/{invoice_pdf_filename(invoice)}", invoice_pdf(invoice))
        archive.writestr("invoices.csv", "\n".join(index) + "\n")
        archive.writestr(
            "README.txt",
            f"Export of workspace {tenant.name} ({tenant.slug}) made {timezone.now():%Y-%m-%d %H:%M} UTC.\n"
            "usage.csv: queries, tokens, cost (USD) and p95 latency per day.\n"
            "invoices.csv and invoices/: every invoice issued to the workspace.\n",
        )
    return buffer.getvalue()


# --- deletion ----------------------------------------------------------------------------------
@dataclass
class PurgeRun:
    deleted: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def retention_purge(*, now: datetime | None = None) -> PurgeRun:
    """Delete every cancelled tenant whose retention period is over (periodic, daily).
    Idempotent: deleted tenants are recorded and skipped."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.LIFECYCLE_RETENTION_DAYS)
    run = PurgeRun()
    due = (
        Tenant.objects.customers()
        .filter(status=TenantStatus.CANCELLED, status_changed_at__lte=cutoff)
        .exclude(pk__in=TenantDeletion.objects.values("tenant_id"))
        .order_by("pk")
    )
    for tenant in due:
        try:
            tenant_delete(tenant=tenant)
            run.deleted.append(tenant.pk)
        except Exception:
            log.exception("deleting tenant %s failed", tenant.pk)
            run.failed.append(tenant.pk)
    handoff_tokens_purge()
    return run


@transaction.atomic
def tenant_delete(*, tenant: Tenant) -> TenantDeletion:
    """Drop a cancelled tenant's schema and anonymise what is kept. One transaction (schema
    DDL is transactional in PostgreSQL): all of it happens, or none."""
    locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
    existing = TenantDeletion.objects.filter(tenant=locked).first()
    if existing is not None:
        return existing
    if locked.status != TenantStatus.CANCELLED or locked.kind != "customer":
        raise ValueError(f"only a cancelled customer tenant can be deleted (tenant {locked.pk} is {locked.status})")
    schema = locked.schema_name
    members = Membership.objects.filter(tenant=locked).count()
    connection.set_schema_to_public()  # type: ignore[attr-defined]
    dropped = schema_exists(schema)
    if dropped:
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    Membership.objects.filter(tenant=locked).delete()
    Domain.objects.filter(tenant=locked).delete()
    Tenant.objects.filter(pk=locked.pk).update(name=f"Deleted tenant #{locked.pk}")
    deletion = TenantDeletion.objects.create(tenant=locked, schema_name=schema, members_removed=members)
    tenant_event_record(
        tenant=locked,
        kind="deleted",
        note=f"Retention period of {settings.LIFECYCLE_RETENTION_DAYS} days over: data deleted.",
        details={"schema_dropped": dropped, "members_removed": members},
    )
    tenant.name = f"Deleted tenant #{locked.pk}"
    return deletion
