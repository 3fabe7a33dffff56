"""Default periodic schedule of the workspace (saasops/schedules.py: created when missing by
`manage.py bootstrap`, never changed afterwards; staff edit it in admin): the department
budget check over every tenant.

The workspace pages check their own tenant's budgets when they are opened; this catches
tenants nobody is looking at.
"""

from __future__ import annotations

from django_celery_beat.models import PeriodicTask

from saasops.schedules import DefaultSchedule, defaults_ensure

NAME = "workspace: department budget alerts (hourly)"
TASK = "workspace.department_budgets_check_all"
DEFAULTS = [
    DefaultSchedule(
        NAME,
        TASK,
        minute="20",
        hour="*",
        description="Record and email (once per billing period) the departments over their monthly budget.",
    )
]


def schedules_ensure() -> PeriodicTask:
    return defaults_ensure(DEFAULTS)[0]
