"""Default periodic schedules of the lifecycle jobs, created once when missing (saasops/schedules.py;
the specs are lifecycle.schedules.DEFAULTS, which bootstrap also ensures). Staff change or disable
them in admin; this never touches them again."""

from django.db import migrations

from saasops.schedules import migration_ensure
from lifecycle.schedules import DEFAULTS


def forwards(apps, schema_editor):
    migration_ensure(apps, DEFAULTS)


def backwards(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[spec.name for spec in DEFAULTS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("lifecycle", "0003_signup_handoff_notices"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
