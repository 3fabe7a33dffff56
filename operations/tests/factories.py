"""Test data of operations: usage rollups written directly (exact hand-computed costs), bills."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from metering.models import UsageHourly
from operations.services.bills import bill_import


def usage(tenant, *, hour: datetime, model: str, calls: int, tokens: int, cost: str, event_type: str = "query"):
    """One hourly rollup row (as ingest writes it): `calls` query events, `tokens` input tokens."""
    return UsageHourly.objects.create(
        tenant=tenant,
        hour=hour,
        event_type=event_type,
        model=model,
        events=calls,
        input_tokens=tokens,
        output_tokens=0,
        cost=Decimal(cost),
    )


def openai_bill(rows: list[tuple[str, str, int, str]], name: str = "openai.csv"):
    """rows: (date, model, tokens, cost)."""
    text = "date,model,tokens,cost\n" + "".join(f"{d},{m},{t},{c}\n" for d, m, t, c in rows)
    return bill_import(raw=text.encode(), file_name=name).bill


def aws_bill(rows: list[tuple[str, str, str]], name: str = "cur.csv"):
    """rows: (usage start date, product code, unblended cost)."""
    text = "lineItem/UsageStartDate,lineItem/ProductCode,lineItem/UsageAmount,lineItem/UnblendedCost\n" + "".join(
        f"{d}T00:00:00Z,{p},1,{c}\n" for d, p, c in rows
    )
    return bill_import(raw=text.encode(), file_name=name).bill


MARCH = datetime(2025, 3, 10, 12, tzinfo=UTC)
