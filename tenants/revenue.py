"""Revenue figures of one tenant, read from its plan: monthly recurring revenue (MRR).

MRR counts only tenants that are paying: active, and past due (still billed, payment late).
Trialing, suspended and cancelled tenants contribute 0. Yearly subscriptions are normalised
to a month (price / 12), rounded half up to a whole minor unit.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from tenants.models import Tenant, TenantStatus

# Statuses whose subscription is billed. Past due is still revenue: it is owed, only late.
PAYING_STATUSES = frozenset({TenantStatus.ACTIVE, TenantStatus.PAST_DUE})

# ISO 4217 currencies without a minor unit (Stripe's "zero-decimal currencies", the common ones).
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd"}
)
CURRENCY_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}


def tenant_mrr_minor(*, tenant: Tenant) -> int:
    """The tenant's MRR in integer minor units of its plan's currency (0 without a plan or
    when not paying). Reads `tenant.plan`: select_related it when listing many tenants."""
    if tenant.status not in PAYING_STATUSES or tenant.plan is None:
        return 0
    monthly = tenant.plan.monthly_equivalent(tenant.billing_interval)
    return int(monthly.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def money_format(*, minor: int, currency: str) -> str:
    """`29900, "usd"` -> "$299.00"; unknown currencies keep their code: "1,234.00 CHF"."""
    code = currency.lower()
    if code in ZERO_DECIMAL_CURRENCIES:
        amount = f"{minor:,}"
    else:
        sign = "-" if minor < 0 else ""
        major, cents = divmod(abs(minor), 100)
        amount = f"{sign}{major:,}.{cents:02d}"
    symbol = CURRENCY_SYMBOLS.get(code)
    if symbol is None:
        return f"{amount} {code.upper()}"
    return f"-{symbol}{amount[1:]}" if amount.startswith("-") else f"{symbol}{amount}"
