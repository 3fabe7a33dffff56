"""Bill importers: good files of both providers, malformed files refused with row and column
named and nothing stored, the same file or overlapping rows never counted twice."""

from __future__ import annotations

import gzip
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from operations.importers import BillFormatError, bill_parse
from operations.models import BillLine, ProviderBill
from operations.services.bills import bill_import

OPENAI_CSV = b"""date,model,project_id,input_tokens,output_tokens,cost
2026-10-01,gpt-4o-2024-08-06,proj_a,1000000,200000,4.50
2026-10-01,gpt-4o-mini,proj_a,2000000,100000,0.36
2026-10-02,gpt-4o-2024-08-06,proj_a,500000,100000,2.25
"""

CUR_CSV = (
    b"identity/LineItemId,identity/TimeInterval,bill/BillingPeriodStartDate,lineItem/LineItemType,"
    b"lineItem/UsageStartDate,lineItem/ProductCode,product/ProductName,lineItem/UsageType,lineItem/UsageAmount,"
    b"pricing/unit,lineItem/UnblendedCost,lineItem/CurrencyCode\n"
    b"li-1,2026-10-01T00:00:00Z/2026-10-02T00:00:00Z,2026-10-01T00:00:00Z,Usage,2026-10-01T00:00:00Z,"
    b"AmazonEC2,Amazon Elastic Compute Cloud,BoxUsage:m5.large,24,Hrs,2.304,USD\n"
    b"li-2,2026-10-01T00:00:00Z/2026-10-02T00:00:00Z,2026-10-01T00:00:00Z,Usage,2026-10-01T00:00:00Z,"
    b"AmazonRDS,Amazon Relational Database Service,InstanceUsage:db.t3.medium,24,Hrs,1.632,USD\n"
    b"li-3,2026-10-02T00:00:00Z/2026-10-03T00:00:00Z,2026-10-01T00:00:00Z,Usage,2026-10-02T00:00:00Z,"
    b"AmazonBedrock,Amazon Bedrock,USE1-Claude3Haiku-input-tokens,1000,1K tokens,0.25,USD\n"
    b"li-4,2026-10-01T00:00:00Z/2026-11-01T00:00:00Z,2026-10-01T00:00:00Z,Credit,2026-10-01T00:00:00Z,"
    b"AmazonEC2,Amazon Elastic Compute Cloud,BoxUsage:m5.large,0,,-0.304,USD\n"
)


def test_openai_export_is_imported(db):
    result = bill_import(raw=OPENAI_CSV, file_name="openai-2026-10.csv")
    bill = result.bill
    assert result.created and bill.provider == "openai"
    assert (bill.rows, bill.lines_added, bill.lines_skipped) == (3, 3, 0)
    assert bill.total_cost == Decimal("7.11")  # 4.50 + 0.36 + 2.25
    lines = list(BillLine.objects.filter(bill=bill).order_by("row_number"))
    assert [(line.row_number, line.item, line.usage_quantity) for line in lines] == [
        (2, "gpt-4o-2024-08-06", Decimal(1_200_000)),
        (3, "gpt-4o-mini", Decimal(2_100_000)),
        (4, "gpt-4o-2024-08-06", Decimal(600_000)),
    ]
    assert {line.month.isoformat() for line in lines} == {"2026-10-01"}


def test_aws_cur_is_imported_with_real_column_names(db):
    bill = bill_import(raw=CUR_CSV, file_name="cur.csv").bill
    assert bill.provider == "aws"
    assert bill.total_cost == Decimal("3.882")  # 2.304 + 1.632 + 0.25 - 0.304 (a credit)
    lines = {line.item: line for line in BillLine.objects.filter(bill=bill, row_number__lt=5)}
    assert lines["AmazonEC2"].shared_infrastructure and lines["AmazonRDS"].shared_infrastructure
    assert not lines["AmazonBedrock"].shared_infrastructure  # model inference, reconciled with metering
    assert lines["AmazonEC2"].usage_quantity == Decimal(24) and lines["AmazonEC2"].usage_unit == "Hrs"


def test_cur2_snake_case_columns_and_gzip_are_accepted(db):
    raw = (
        b"line_item_product_code,line_item_usage_amount,line_item_unblended_cost,line_item_usage_start_date\n"
        b"AmazonS3,100,0.023,2026-10-05T00:00:00.000Z\n"
    )
    bill = bill_import(raw=gzip.compress(raw), file_name="cur2.csv.gz").bill
    assert (bill.provider, bill.lines_added, bill.total_cost) == ("aws", 1, Decimal("0.023"))


@pytest.mark.parametrize(
    ("raw", "provider", "row", "column", "words"),
    [
        (b"date,model,tokens,cost\n2026-10-01,gpt-4o,100,0.1\n2026-10-02,gpt-4o,100,12,5x\n", None, 3, None, "cells"),
        (b"date,model,tokens,cost\n2026-10-01,gpt-4o,1,0.1\n2026-10-02,gpt-4o,1,abc\n", None, 3, "cost", "number"),
        (b"date,model,tokens,cost\n2026-13-01,gpt-4o,100,0.1\n", None, 2, "date", "not a date"),
        (b"date,model,tokens,cost\n2026-10-01,,100,0.1\n", None, 2, "model", "empty"),
        (b"date,model,tokens,cost\n2026-10-01,gpt-4o,1.5,0.1\n", None, 2, "tokens", "whole number"),
        (b"date,model,tokens,cost\n2026-10-01,gpt-4o,100,-0.1\n", None, 2, "cost", "negative"),
        (b"date,model,cost\n2026-10-01,gpt-4o,0.1\n", None, 1, None, "tokens"),
        (b"date,model,tokens,cost,currency\n2026-10-01,gpt-4o,1,0.1,EUR\n", None, 2, "currency", "USD"),
        (
            b"lineItem/ProductCode,lineItem/UsageAmount,lineItem/UnblendedCost,lineItem/UsageStartDate\n"
            b"AmazonEC2,1,0.5,2026-10-01T00:00:00Z\nAmazonEC2,1,NaNx,2026-10-01T00:00:00Z\n",
            None, 3, "lineItem/UnblendedCost", "not a number",
        ),
        (
            b"lineItem/ProductCode,lineItem/UsageAmount,lineItem/UsageStartDate\nAmazonEC2,1,2026-10-01T00:00:00Z\n",
            None, 1, None, "lineItem/UnblendedCost",
        ),
        (b"date,model,tokens,cost\n2026-10-01,gpt-4o,100,0.1\n", "aws", 1, None, "does not look like"),
        (b"date,model,tokens,cost\n", None, None, None, "no data rows"),
        (b"", None, None, None, "empty"),
    ],
)  # fmt: skip
def test_malformed_files_are_refused_naming_row_and_column(db, raw, provider, row, column, words):
    with pytest.raises(BillFormatError) as caught:
        bill_import(raw=raw, file_name="bad.csv", provider=provider)
    error = caught.value
    assert (error.row, error.column) == (row, column)
    assert words in str(error)
    if row is not None:
        assert f"row {row}" in str(error)
    assert not ProviderBill.objects.exists() and not BillLine.objects.exists()


def test_a_bad_row_late_in_the_file_stores_nothing(db):
    rows = b"".join(b"2026-10-%02d,gpt-4o,100,0.1\n" % day for day in range(1, 29))
    with pytest.raises(BillFormatError, match="row 30, column 'cost'"):
        bill_import(raw=b"date,model,tokens,cost\n" + rows + b"2026-10-29,gpt-4o,100,oops\n", file_name="x.csv")
    assert BillLine.objects.count() == 0


def test_the_same_file_twice_is_imported_once(db):
    first = bill_import(raw=OPENAI_CSV, file_name="a.csv")
    second = bill_import(raw=OPENAI_CSV, file_name="a-again.csv")
    assert first.created and not second.created and second.bill.pk == first.bill.pk
    assert "already imported" in second.summary
    assert ProviderBill.objects.count() == 1 and BillLine.objects.count() == 3


def test_overlapping_export_adds_only_new_rows(db):
    bill_import(raw=OPENAI_CSV, file_name="first.csv")
    # Re-exported with a fourth row and different formatting (so a different file hash).
    overlapping = OPENAI_CSV.replace(b"\n", b"\r\n") + b"2026-10-03,gpt-4o-mini,proj_a,100000,0,0.015\r\n"
    result = bill_import(raw=overlapping, file_name="second.csv")
    assert result.created and (result.bill.lines_added, result.bill.lines_skipped) == (1, 3)
    assert result.bill.total_cost == Decimal("0.015")
    assert BillLine.objects.count() == 4


def test_identical_rows_in_one_file_stay_two_rows(db):
    raw = b"date,model,tokens,cost\n2026-10-01,gpt-4o,100,0.1\n2026-10-01,gpt-4o,100,0.1\n"
    assert bill_import(raw=raw, file_name="twice.csv").bill.lines_added == 2
    assert len({line.natural_key for line in bill_parse(raw).lines}) == 2


def test_import_bill_command(db, tmp_path):
    path = tmp_path / "openai.csv"
    path.write_bytes(OPENAI_CSV)
    out = __import__("io").StringIO()
    call_command("import_bill", str(path), "--provider", "openai", stdout=out)
    assert "3 line(s) added" in out.getvalue()
    call_command("import_bill", str(path), stdout=out)
    assert "already imported" in out.getvalue()
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"date,model,tokens,cost\n2026-10-01,gpt-4o,x,1\n")
    with pytest.raises(CommandError, match=r"row 2, column 'tokens'.*nothing was imported"):
        call_command("import_bill", str(bad))
    assert BillLine.objects.count() == 3
