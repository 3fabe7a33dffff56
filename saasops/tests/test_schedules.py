"""Default schedules (saasops/schedules.py): every app's defaults exist, a missing one is
created again, one staff changed or disabled is left alone."""

from __future__ import annotations

import pytest
from django_celery_beat.models import PeriodicTask

from billing.schedules import DEFAULTS as BILLING
from lifecycle.schedules import DEFAULTS as LIFECYCLE
from operations.services.schedules import DEFAULTS as OPERATIONS
from saasops.schedules import defaults_ensure
from workspace.schedules import DEFAULTS as WORKSPACE

pytestmark = pytest.mark.django_db
ALL = [*BILLING, *LIFECYCLE, *OPERATIONS, *WORKSPACE]


def test_every_default_is_ensured_once_with_its_crontab():
    rows = defaults_ensure(ALL)
    assert [r.name for r in rows] == [s.name for s in ALL]
    assert len({s.name for s in ALL}) == len(ALL)
    for spec, row in zip(ALL, rows, strict=True):
        assert (row.task, row.crontab.minute, row.crontab.hour, str(row.crontab.timezone)) == (
            spec.task,
            spec.minute,
            spec.hour,
            "UTC",
        )
    assert [r.pk for r in defaults_ensure(ALL)] == [r.pk for r in rows]


def test_staff_changes_are_kept_and_a_deleted_default_comes_back():
    first, second = defaults_ensure(LIFECYCLE[:2])
    PeriodicTask.objects.filter(pk=first.pk).update(enabled=False, description="paused by staff")
    second.delete()
    again = defaults_ensure(LIFECYCLE[:2])
    assert again[0].pk == first.pk and not again[0].enabled and again[0].description == "paused by staff"
    assert again[1].pk != second.pk and again[1].enabled
