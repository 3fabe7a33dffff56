"""Default periodic schedules as django-celery-beat rows (beat reads them from the database;
staff change or disable them in admin without a deploy).

Each app lists its defaults (billing/schedules.py, lifecycle/schedules.py,
operations/services/schedules.py, workspace/schedules.py) and `manage.py bootstrap` ensures
them on every start; two data migrations ensure theirs once with the historical models.
Ensuring creates the rows that are missing, by name, and never touches an existing one, so a
schedule staff changed or disabled stays so. Idempotent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django_celery_beat.models import CrontabSchedule, PeriodicTask


@dataclass(frozen=True)
class DefaultSchedule:
    name: str
    task: str
    minute: str
    hour: str
    description: str


def defaults_ensure(
    specs: Iterable[DefaultSchedule], *, crontab_model: Any = CrontabSchedule, task_model: Any = PeriodicTask
) -> list[Any]:
    """The PeriodicTask row of each spec (in order), created (crontab in UTC) where missing.
    The models default to the live ones; a data migration passes its historical models."""
    rows = []
    with transaction.atomic():
        for spec in specs:
            existing = task_model.objects.filter(name=spec.name).first()
            if existing is not None:
                rows.append(existing)
                continue
            crontab, _ = crontab_model.objects.get_or_create(
                minute=spec.minute, hour=spec.hour, day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
            )
            rows.append(
                task_model.objects.create(
                    name=spec.name, task=spec.task, crontab=crontab, description=spec.description, enabled=True
                )
            )
    return rows


def migration_ensure(apps: Any, specs: Iterable[DefaultSchedule]) -> None:
    """For a data migration's RunPython: the same, with the migration state's models."""
    defaults_ensure(
        specs,
        crontab_model=apps.get_model("django_celery_beat", "CrontabSchedule"),
        task_model=apps.get_model("django_celery_beat", "PeriodicTask"),
    )
