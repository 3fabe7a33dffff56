"""Quota periods: monthly, anchored on the day of month the tenant was created (days past
28 anchor on the 28th so every month has the day). Half-open [start, end), UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from tenants.models import Tenant


def _month_add(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def anchor_day(tenant: Tenant) -> int:
    return min(tenant.created_at.astimezone(UTC).day, 28)


def period_bounds(*, anchor: int, at: datetime) -> tuple[datetime, datetime]:
    at = at.astimezone(UTC)
    year, month = (at.year, at.month) if at.day >= anchor else _month_add(at.year, at.month, -1)
    start = datetime(year, month, anchor, tzinfo=UTC)
    end_year, end_month = _month_add(year, month, 1)
    return start, datetime(end_year, end_month, anchor, tzinfo=UTC)


def quota_period(*, tenant: Tenant, at: datetime) -> tuple[datetime, datetime]:
    return period_bounds(anchor=anchor_day(tenant), at=at)
