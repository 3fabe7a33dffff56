from django.db import migrations


def forwards(apps, schema_editor):
    from tenants import plan_catalog

    plan_catalog.install(apps.get_model("tenants", "Plan"), apps.get_model("tenants", "PlanLimit"))
    VectorShard = apps.get_model("tenants", "VectorShard")
    if not VectorShard.objects.exists():
        VectorShard.objects.create(name="shard-1", connection_label="vector-db-1", capacity=5000)


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
