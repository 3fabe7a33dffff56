"""Default periodic schedules of the operations jobs (django-celery-beat rows; staff change or
disable them in admin — this runs once and never touches them again). The same specs are in
operations/services/schedules.py (schedules_ensure) for bootstrap."""

from django.db import migrations

SCHEDULES = [
    ("operations: readiness audit (daily)", "operations.readiness_audit", "40", "6",
     "Run the four readiness checks, store the results, email staff when one fails (06:40 UTC)."),
    ("operations: cost reconciliation (daily)", "operations.reconcile_costs", "20", "6",
     "Compare tracked cost with imported provider bills for every month whose inputs changed."),
    ("operations: business metrics snapshot (daily)", "operations.metrics_snapshot", "10", "0",
     "Snapshot MRR, churn, ARPU, conversion and margins as of the end of yesterday (00:10 UTC)."),
    ("operations: monitoring thresholds (every 5 minutes)", "operations.monitoring_alerts", "*/5", "*",
     "Email staff when error rate, p95 latency, queue backlog or failed payments cross a threshold."),
]


def forwards(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, minute, hour, description in SCHEDULES:
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=minute, hour=hour, day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
        )
        PeriodicTask.objects.create(name=name, task=task, crontab=crontab, description=description, enabled=True)


def backwards(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("operations", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
