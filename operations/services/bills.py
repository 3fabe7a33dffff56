"""Importing provider bills: all-or-nothing, once per file, once per row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.db import connection, transaction

from operations.importers import bill_parse
from operations.models import BillLine, ProviderBill
from tenants.models import User

# One import at a time: two concurrent imports of overlapping files would otherwise both see
# a row as new. (An arbitrary constant key for pg_advisory_xact_lock.)
_IMPORT_LOCK = 7_301_008


@dataclass
class BillImportResult:
    bill: ProviderBill
    created: bool  # False: this exact file was imported before; nothing was added

    @property
    def summary(self) -> str:
        bill = self.bill
        if not self.created:
            return f"already imported as bill #{bill.pk} on {bill.imported_at:%Y-%m-%d %H:%M} UTC; nothing added"
        text = f"bill #{bill.pk}: {bill.lines_added} line(s) added, total {bill.total_cost.normalize():f} USD"
        if bill.lines_skipped:
            text += f"; {bill.lines_skipped} row(s) were already imported from an earlier file and were skipped"
        return text


def _first_of_month(day: date) -> date:
    return day.replace(day=1)


@transaction.atomic
def bill_import(
    *, raw: bytes, file_name: str, provider: str | None = None, user: User | None = None
) -> BillImportResult:
    """Import one bill file. Every row is validated before anything is written (a malformed
    file raises `BillFormatError` naming the row and column, and nothing is stored). The same
    file (SHA-256 of its bytes) imports once; a row whose natural key an earlier file already
    brought is skipped, so overlapping exports never count a cost twice. Atomic."""
    parsed = bill_parse(raw, provider=provider)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_IMPORT_LOCK])
    existing = ProviderBill.objects.filter(sha256=parsed.sha256).first()
    if existing is not None:
        return BillImportResult(bill=existing, created=False)
    keys = [line.natural_key for line in parsed.lines]
    known: set[str] = set()
    for start in range(0, len(keys), 5000):
        known.update(
            BillLine.objects.filter(provider=parsed.provider, natural_key__in=keys[start : start + 5000]).values_list(
                "natural_key", flat=True
            )
        )
    new = [line for line in parsed.lines if line.natural_key not in known]
    bill = ProviderBill.objects.create(
        provider=parsed.provider,
        file_name=file_name[:255],
        sha256=parsed.sha256,
        imported_by=user,
        rows=len(parsed.lines),
        lines_added=len(new),
        lines_skipped=len(parsed.lines) - len(new),
        total_cost=sum((line.cost for line in new), Decimal(0)),
        first_day=min((line.day for line in new), default=None),
        last_day=max((line.day for line in new), default=None),
    )
    BillLine.objects.bulk_create(
        (
            BillLine(
                bill=bill,
                provider=parsed.provider,
                natural_key=line.natural_key,
                row_number=line.row_number,
                day=line.day,
                month=_first_of_month(line.day),
                item=line.item,
                usage_quantity=line.usage_quantity,
                usage_unit=line.usage_unit,
                cost=line.cost,
                shared_infrastructure=line.shared_infrastructure,
            )
            for line in new
        ),
        batch_size=2000,
    )
    return BillImportResult(bill=bill, created=True)
