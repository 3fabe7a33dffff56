"""Writes to metering made by other layers (billing moves the invoiced-through cursor)."""

from __future__ import annotations

from datetime import datetime

from django.db import connection


def usage_cursor_advance(*, tenant_id: int, closed_through: datetime) -> None:
    """Usage before `closed_through` is invoiced; events for it that arrive later are flagged
    late. The cursor only moves forward (idempotent, safe under concurrency)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO metering_usagecursor (tenant_id, closed_through, updated_at) VALUES (%s, %s, now()) "
            "ON CONFLICT (tenant_id) DO UPDATE SET closed_through = greatest(metering_usagecursor.closed_through, "
            "EXCLUDED.closed_through), updated_at = now()",
            [tenant_id, closed_through],
        )
