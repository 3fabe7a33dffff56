"""The rating engine: usage and plan → invoice lines, with the arithmetic written down.

Rules (docs/BILLING.md has them with examples):
- Periods are monthly, [start, end), anchored on the subscription's anchor day.
- Plan fee: monthly interval → `price_monthly` each period, prorated by time when the
  subscription is billable for only part of it (trial ending, start, cancellation).
  Yearly interval → `price_yearly` on the first billable period and every 12th after it.
- Usage: per limited resource, used = the meter's total over the billable part of the
  period; included quantities are per period and not prorated. Past `included`, an
  overage plan charges per started package: ceil(overage / package_size) × package_price.
  Hard-limited resources show their usage at 0.00.
- Rounding: each line's amount is rounded once, half-up, to the currency's minor unit; the
  invoice total is the sum of its rounded lines. Tax is its own line on the sum after
  discounts and credits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from billing.models import LineKind
from tenants.models import BillingInterval, LimitAction, Plan, PlanLimit

ZERO_DECIMAL_CURRENCIES = {"jpy", "krw", "vnd", "clp", "isk", "ugx", "xaf", "xof"}
RESOURCE_METER = {"api_calls": "api_calls", "ai_tokens": "ai_tokens", "storage_gb": "storage_gb"}
RESOURCE_WORDS = {"api_calls": "API calls", "ai_tokens": "AI tokens", "storage_gb": "GB of storage"}


def minor_exponent(currency: str) -> int:
    return 0 if currency.lower() in ZERO_DECIMAL_CURRENCIES else 2


def to_minor(amount: Decimal, currency: str) -> int:
    """Major units → integer minor units, rounded half-up (the one rounding rule)."""
    scale = Decimal(10) ** minor_exponent(currency)
    return int((amount * scale).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def from_minor(amount: int, currency: str) -> Decimal:
    return Decimal(amount) / (Decimal(10) ** minor_exponent(currency))


@dataclass
class LineSpec:
    kind: str
    description: str
    amount: int
    quantity: Decimal = Decimal(1)
    unit_price: Decimal = Decimal(0)
    meter: str = ""
    period_start: datetime | None = None
    period_end: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)
    usage_query: str = ""


def _fmt_qty(value: Decimal) -> str:
    return f"{value:,.0f}" if value == value.to_integral_value() else f"{value:,.2f}"


def _fmt_number(value: Decimal) -> str:
    """20.0000 -> "20", 12.50 -> "12.5": never the exponent form ("2E+1") normalize() alone gives."""
    return f"{value.normalize():f}"


def _fmt_price(value: Decimal) -> str:
    """At least two decimals, more when the price has them: 0.5 -> "0.50", 0.0025 -> "0.0025"."""
    exponent = value.normalize().as_tuple().exponent
    decimals = max(2, -exponent if isinstance(exponent, int) else 0)
    return f"{value:.{decimals}f}"


def _date(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d")


def plan_fee_line(
    *,
    plan: Plan,
    interval: str,
    period_start: datetime,
    period_end: datetime,
    billable_start: datetime,
    billable_end: datetime,
    year_starts: bool,
) -> LineSpec | None:
    """The plan fee for the period (None when nothing is due, e.g. a yearly mid-year period)."""
    if billable_end <= billable_start:
        return None
    if interval == BillingInterval.YEARLY:
        if not year_starts:
            return None
        price = from_minor(plan.price_yearly, plan.currency)
        return LineSpec(
            kind=LineKind.BASE,
            description=f"{plan.name} plan, yearly fee (12 months from {_date(billable_start)})",
            amount=to_minor(price, plan.currency),
            unit_price=price,
            period_start=billable_start,
            period_end=billable_end,
            details={"interval": "yearly"},
        )
    price = from_minor(plan.price_monthly, plan.currency)
    full = (period_end - period_start).total_seconds()
    part = (billable_end - billable_start).total_seconds()
    fraction = Decimal(1) if part >= full else (Decimal(part) / Decimal(full)).quantize(Decimal("0.000001"))
    description = f"{plan.name} plan, {_date(period_start)} to {_date(period_end)}"
    if fraction < 1:
        description = (
            f"{plan.name} plan, {_date(billable_start)} to {_date(billable_end)} "
            f"(prorated: {fraction:.2%} of the month)"
        )
    return LineSpec(
        kind=LineKind.BASE,
        description=description,
        amount=to_minor(price * fraction, plan.currency),
        quantity=fraction,
        unit_price=price,
        period_start=billable_start,
        period_end=billable_end,
        details={"interval": "monthly", "fraction": str(fraction)},
    )


def terms_of(details: dict[str, Any]) -> PlanLimit | None:
    """The limit a usage line was rated with (unsaved), from its details; None for lines
    rated before the terms were recorded."""
    terms = details.get("terms")
    if not isinstance(terms, dict):
        return None
    return PlanLimit(
        resource=terms["resource"],
        included=terms["included"],
        on_exceed=terms["on_exceed"],
        overage_package_size=terms["package_size"],
        overage_package_price=Decimal(terms["package_price"]),
    )


def usage_line(
    *,
    limit: PlanLimit,
    currency: str,
    used: Decimal,
    period_start: datetime,
    period_end: datetime,
    tenant_slug: str,
    description_prefix: str = "",
) -> LineSpec:
    """One metered resource: used vs included, overage packages and their price."""
    words = RESOURCE_WORDS.get(limit.resource, limit.resource)
    meter = RESOURCE_METER.get(limit.resource, limit.resource)
    included = None if limit.included is None else Decimal(limit.included)
    overage = Decimal(0) if included is None else max(Decimal(0), used - included)
    details: dict[str, Any] = {
        "used": str(used),
        "included": None if included is None else str(included),
        "on_exceed": limit.on_exceed,
        "overage": str(overage),
        # The terms rated with, so a later re-rating of this period (late usage) applies the
        # same ones even after the plan changed or was edited: terms_of(details).
        "terms": {
            "resource": limit.resource,
            "included": limit.included,
            "on_exceed": limit.on_exceed,
            "package_size": limit.overage_package_size,
            "package_price": str(limit.overage_package_price),
        },
    }
    query = (
        f"/api/v1/tenants/{tenant_slug}/usage?from={period_start.isoformat()}&to={period_end.isoformat()}"
        f"&granularity=day&group_by=meter"
    )
    if limit.on_exceed == LimitAction.OVERAGE and overage > 0:
        size = Decimal(limit.overage_package_size)
        packages = Decimal(math.ceil(overage / size))
        price = limit.overage_package_price
        unit = "" if size == 1 else f" per {_fmt_qty(size)}"
        details.update({"packages": str(packages), "package_size": str(size), "package_price": str(price)})
        return LineSpec(
            kind=LineKind.USAGE,
            description=(
                f"{description_prefix}{_fmt_qty(used)} {words} used, {_fmt_qty(included or Decimal(0))} included: "
                f"{_fmt_qty(overage)} over at {_fmt_price(price)}{unit}"
            ),
            amount=to_minor(packages * price, currency),
            quantity=packages,
            unit_price=price,
            meter=meter,
            period_start=period_start,
            period_end=period_end,
            details=details,
            usage_query=query,
        )
    included_text = "unlimited" if included is None else f"{_fmt_qty(included)} included"
    return LineSpec(
        kind=LineKind.USAGE,
        description=f"{description_prefix}{_fmt_qty(used)} {words} used ({included_text})",
        amount=0,
        quantity=used,
        meter=meter,
        period_start=period_start,
        period_end=period_end,
        details=details,
        usage_query=query,
    )


def discount_line(
    *, base_amount: int, percent_off: Decimal | None, amount_off: int | None, code: str
) -> LineSpec | None:
    if base_amount <= 0:
        return None
    if percent_off is not None:
        off = int((Decimal(base_amount) * percent_off / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        text = f"Discount {code}: {_fmt_number(percent_off)}% off the plan fee"
    else:
        off = min(int(amount_off or 0), base_amount)
        text = f"Discount {code}: off the plan fee"
    if off <= 0:
        return None
    return LineSpec(kind=LineKind.DISCOUNT, description=text, amount=-off, details={"coupon": code})


def tax_line(*, taxable: int, rate: Decimal) -> LineSpec | None:
    if rate <= 0 or taxable <= 0:
        return None
    amount = int((Decimal(taxable) * rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return LineSpec(
        kind=LineKind.TAX,
        description=f"Tax at {_fmt_number(rate * 100)}%",
        amount=amount,
        quantity=Decimal(1),
        unit_price=rate,
        details={"rate": str(rate), "taxable": taxable},
    )
