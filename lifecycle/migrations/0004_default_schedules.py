"""Default periodic schedules of the lifecycle jobs (django-celery-beat rows; staff change or
disable them in admin — this migration runs once and never touches them again)."""

from django.db import migrations

SCHEDULES = [
    ("lifecycle: trial reminders (hourly)", "lifecycle.trial_reminders", "10", "*",
     "Trial reminder emails 3 and 1 days before a trial ends, each once."),
    ("lifecycle: trial ends (hourly)", "lifecycle.trial_ends", "20", "*",
     "Convert (payment method on file) or suspend (none) tenants whose trial is over."),
    ("lifecycle: scheduled cancellations (hourly)", "lifecycle.cancellations_due", "25", "*",
     "Cancel tenants whose cancellation at period end has come."),
    ("lifecycle: retention purge (daily)", "lifecycle.retention_purge", "30", "3",
     "Drop the data of tenants cancelled longer than LIFECYCLE_RETENTION_DAYS ago (03:30 UTC)."),
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
        ("lifecycle", "0003_signup_handoff_notices"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
