"""Usage alerts at 80% and 100% of an included quantity: once per tenant, meter and period,
recorded and emailed to the tenant's owner (and visible in admin)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction

from metering.models import Meter, UsageAlert

THRESHOLDS = (80, 100)


def alerts_check(
    *, tenant_id: int, meter_code: str, period_start: datetime, before: float, after: float
) -> list[UsageAlert]:
    """Raise the alerts whose threshold lies in (before, after]. Idempotent: the unique
    (tenant, meter, period, threshold) constraint makes a repeat a no-op."""
    from metering.quota import gate_info
    from tenants.models import Tenant

    slug = Tenant.objects.filter(pk=tenant_id).values_list("slug", flat=True).first()
    info = gate_info(slug) if slug else None
    limit = (info or {}).get("limits", {}).get(meter_code)
    if not limit or not limit["included"]:
        return []
    included = int(limit["included"])
    raised = []
    for threshold in THRESHOLDS:
        mark = included * threshold / 100
        if before < mark <= after:
            alert = usage_alert_raise(
                tenant_id=tenant_id, meter_code=meter_code, period_start=period_start, threshold=threshold,
                used=after, included=included,
            )  # fmt: skip
            if alert is not None:
                raised.append(alert)
    return raised


def usage_alert_raise(
    *, tenant_id: int, meter_code: str, period_start: datetime, threshold: int, used: float, included: int
) -> UsageAlert | None:
    meter = Meter.objects.get(code=meter_code)
    try:
        with transaction.atomic():
            alert = UsageAlert.objects.create(
                tenant_id=tenant_id,
                meter=meter,
                period_start=period_start,
                threshold=threshold,
                used=Decimal(str(used)),
                included=included,
            )
    except IntegrityError:
        return None  # already raised this period
    from metering.tasks import usage_alert_email

    transaction.on_commit(lambda: usage_alert_email.delay(alert.pk))
    return alert
