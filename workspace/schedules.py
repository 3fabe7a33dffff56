"""Default periodic schedule of the workspace, as a django-celery-beat row (staff change it
in admin without a deploy): the department budget check over every tenant.

The workspace pages check their own tenant's budgets when they are opened; this catches
tenants nobody is looking at. `schedules_ensure()` creates the row when missing and leaves an
existing one alone (a schedule staff changed or disabled stays so). Idempotent; meant to be
called by `manage.py bootstrap` like billing's.
"""

from __future__ import annotations

from django.db import transaction
from django_celery_beat.models import CrontabSchedule, PeriodicTask

NAME = "workspace: department budget alerts (hourly)"
TASK = "workspace.department_budgets_check_all"


@transaction.atomic
def schedules_ensure() -> PeriodicTask:
    existing = PeriodicTask.objects.filter(name=NAME).first()
    if existing is not None:
        return existing
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="20", hour="*", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    return PeriodicTask.objects.create(
        name=NAME,
        task=TASK,
        crontab=crontab,
        description="Record and email (once per billing period) the departments over their monthly budget.",
    )
