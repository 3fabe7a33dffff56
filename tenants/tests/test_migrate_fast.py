"""tenants/migrate_fast.py: the scan that finds tenant schemas lacking migrations, the
`migrate_tenants` command, and the lean template clone behind Tenant.create_schema.

Everything runs inside the test's transaction (schemas made here are rolled back)."""

from __future__ import annotations

import io
import logging

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import quote_schema_name, schema_exists

from tenants import migrate_fast
from tenants.migrate_fast import DiskMigrations, missing_migrations, scan_schemas

TEMPLATE = settings.TENANT_BASE_SCHEMA
# A shared app's migration: its operations are skipped in tenant schemas (router), so
# migrating it again in a tenant schema only records it — a cheap "behind" schema.
PROBE = ("sessions", "0001_initial")


def _forget(schema: str, key: tuple[str, str] = PROBE) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {quote_schema_name(schema)}.django_migrations WHERE app = %s AND name = %s",  # noqa: S608
            list(key),
        )
        assert cursor.rowcount == 1


def _has(schema: str, key: tuple[str, str] = PROBE) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {quote_schema_name(schema)}.django_migrations WHERE app = %s AND name = %s",  # noqa: S608
            list(key),
        )
        return cursor.fetchone() is not None


# --- which migrations are missing ------------------------------------------------------------


def test_missing_migrations_follows_djangos_rules_for_squashed_migrations():
    disk = DiskMigrations(
        keys=frozenset({("a", "1"), ("a", "2"), ("a", "1_squashed_2"), ("a", "3")}),
        replaces={("a", "1_squashed_2"): (("a", "1"), ("a", "2"))},
    )
    # Applying a squash records the migrations it replaces (not itself): up to date.
    assert missing_migrations({("a", "1"), ("a", "2"), ("a", "3")}, disk) == []
    # A squash row without its originals counts as not applied, as in Django's loader.
    assert missing_migrations({("a", "1_squashed_2"), ("a", "3")}, disk) == [("a", "1_squashed_2")]
    assert missing_migrations({("a", "1"), ("a", "1_squashed_2")}, disk) == [("a", "2"), ("a", "3")]  # partial
    assert missing_migrations(set(), disk) == [("a", "1_squashed_2"), ("a", "3")]  # fresh: the squash


def test_up_to_date_schemas_are_detected_as_such(tenant_a, tenant_b):
    scan = scan_schemas([TEMPLATE, tenant_a.schema_name, tenant_b.schema_name])
    assert scan.missing == {}
    assert scan.absent == []
    assert scan.checked == 3
    assert scan.queries == 2  # one catalog query, one UNION over the three django_migrations


def test_a_schema_missing_a_migration_row_is_detected(tenant_a, tenant_b):
    _forget(tenant_a.schema_name)
    scan = scan_schemas([TEMPLATE, tenant_a.schema_name, tenant_b.schema_name], batch_size=2)
    assert scan.missing == {tenant_a.schema_name: [PROBE]}
    assert scan.queries == 3  # batches of two


def test_a_tenant_row_without_schema_is_reported_absent(tenant_a):
    scan = scan_schemas([tenant_a.schema_name, "no_such_schema"])
    assert scan.absent == ["no_such_schema"]
    assert scan.missing == {}


# --- migrate_tenants --------------------------------------------------------------------------


@pytest.fixture
def migrated(monkeypatch):
    """The schemas migrate_tenants really migrates, in order."""
    calls: list[str] = []
    real = migrate_fast._migrate_schema

    def spy(schema, **kwargs):
        calls.append(schema)
        return real(schema, **kwargs)

    monkeypatch.setattr(migrate_fast, "_migrate_schema", spy)
    return calls


def _content_type_forget(schema: str, app_label: str, model: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {quote_schema_name(schema)}.django_content_type WHERE app_label = %s AND model = %s",  # noqa: S608
            [app_label, model],
        )
        assert cursor.rowcount == 1


def _content_type_exists(schema: str, app_label: str, model: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {quote_schema_name(schema)}.django_content_type WHERE app_label = %s AND model = %s",  # noqa: S608
            [app_label, model],
        )
        return cursor.fetchone() is not None


def test_migrate_tenants_migrates_the_template_first_then_only_the_schemas_behind(migrated, tenant_a, tenant_b):
    _forget(tenant_a.schema_name)
    out = io.StringIO()
    call_command("migrate_tenants", "--full", stdout=out)
    assert migrated == [TEMPLATE, tenant_a.schema_name]
    assert _has(tenant_a.schema_name)
    assert scan_schemas([TEMPLATE, tenant_a.schema_name, tenant_b.schema_name]).missing == {}
    text = out.getvalue()
    assert f"template {TEMPLATE} migrated" in text
    assert "1 behind" in text
    assert f"{tenant_a.schema_name} migrated" in text and "sessions.0001_initial" in text
    assert "done in" in text


def test_shared_app_migrations_are_recorded_without_a_migrate_run(migrated, tenant_a, tenant_b):
    """What migrate would leave in a tenant schema for a shared app's migration: its row, and
    the content types post_migrate adds."""
    _forget(tenant_a.schema_name)
    _forget(tenant_b.schema_name, ("tenants", "0001_initial"))
    _content_type_forget(tenant_b.schema_name, "sessions", "session")
    out = io.StringIO()
    call_command("migrate_tenants", stdout=out)
    assert migrated == [TEMPLATE]  # no migrate run for A or B
    assert _has(tenant_a.schema_name) and _has(tenant_b.schema_name, ("tenants", "0001_initial"))
    assert _content_type_exists(tenant_b.schema_name, "sessions", "session")
    assert scan_schemas([TEMPLATE, tenant_a.schema_name, tenant_b.schema_name]).missing == {}
    assert "recorded shared-app migrations in 2 schemas" in out.getvalue()
    # The content types recorded are exactly those a real migrate left in the template.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT app_label, model FROM {quote_schema_name(TEMPLATE)}.django_content_type")  # noqa: S608
        assert sorted(cursor.fetchall()) == migrate_fast._content_types()


def test_only_migrations_that_do_nothing_in_tenant_schemas_are_record_only():
    from django.db import migrations

    from tenants.migrate_fast import disk_migrations, record_only_in_tenant_schemas

    disk = disk_migrations()
    assert ("tenants", "0002_default_plans_and_shard") in disk.record_only  # shared app, RunPython
    assert ("workspace", "0001_initial") not in disk.record_only  # a tenant app: really migrated
    assert ("contenttypes", "0001_initial") not in disk.record_only  # in both lists

    def migration(*operations, app="tenants"):
        made = migrations.Migration("9999_probe", app)
        made.operations = list(operations)
        return made

    class CustomOperation(migrations.RunSQL):  # not a built-in: may ignore the router
        pass

    noop = migrations.RunPython.noop
    assert record_only_in_tenant_schemas(migration(migrations.RunPython(noop), migrations.RunSQL("SELECT 1")))
    assert record_only_in_tenant_schemas(
        migration(migrations.SeparateDatabaseAndState(database_operations=[migrations.RunSQL("SELECT 1")]))
    )
    assert not record_only_in_tenant_schemas(migration(migrations.RunPython(noop), app="workspace"))
    assert not record_only_in_tenant_schemas(migration(CustomOperation("SELECT 1")))
    assert not record_only_in_tenant_schemas(
        migration(migrations.SeparateDatabaseAndState(database_operations=[CustomOperation("SELECT 1")]))
    )
    # migrate follows RenameModel with a content type rename, which does reach tenant schemas
    assert not record_only_in_tenant_schemas(migration(migrations.RenameModel("Plan", "Tier")))


def test_an_unknown_post_migrate_receiver_turns_recording_off(migrated, tenant_a):
    from django.db.models.signals import post_migrate

    def also_per_schema(**kwargs):
        pass

    post_migrate.connect(also_per_schema, dispatch_uid="test-also-per-schema")
    try:
        _forget(tenant_a.schema_name)
        out = io.StringIO()
        call_command("migrate_tenants", stdout=out)
    finally:
        post_migrate.disconnect(dispatch_uid="test-also-per-schema")
    assert migrated == [TEMPLATE, tenant_a.schema_name]
    assert "record-only shortcut not used: post_migrate receiver" in out.getvalue()


def test_migrate_tenants_with_everything_up_to_date_migrates_only_the_template(migrated, tenant_a):
    out = io.StringIO()
    call_command("migrate_tenants", stdout=out)
    assert migrated == [TEMPLATE]
    assert "0 behind" in out.getvalue()


def test_the_template_schema_is_checked_too(tenant_a):
    _forget(TEMPLATE)
    with pytest.raises(CommandError, match=rf"{TEMPLATE}: behind: sessions.0001_initial"):
        call_command("migrate_tenants", "--check", stdout=io.StringIO())
    assert not _has(TEMPLATE)  # --check changes nothing
    call_command("migrate_tenants", stdout=io.StringIO())
    assert _has(TEMPLATE)


def test_check_exits_non_zero_naming_the_schemas_behind(tenant_a, tenant_b):
    _forget(tenant_b.schema_name)
    with pytest.raises(CommandError, match=rf"1 schema\(s\) behind:\n  {tenant_b.schema_name}: behind"):
        call_command("migrate_tenants", "--check", stdout=io.StringIO())
    assert not _has(tenant_b.schema_name)


def test_a_failing_schema_stops_the_run_with_a_non_zero_exit(monkeypatch, tenant_a, tenant_b):
    _forget(tenant_a.schema_name)
    _forget(tenant_b.schema_name)
    calls: list[str] = []

    def boom(schema, **kwargs):
        calls.append(schema)
        if schema != TEMPLATE:
            raise RuntimeError("disk full")

    monkeypatch.setattr(migrate_fast, "_migrate_schema", boom)
    with pytest.raises(CommandError, match=r"RuntimeError: disk full"):
        call_command("migrate_tenants", "--full", stdout=io.StringIO())
    assert calls == [TEMPLATE, tenant_a.schema_name]  # stopped at the first failure


# --- creating schemas -------------------------------------------------------------------------


def _signature(schema: str) -> dict[str, list]:
    """Structure and rows of a schema, with its own name taken out of every definition."""

    def rows(sql: str) -> list:
        with connection.cursor() as cursor:
            cursor.execute(sql, {"s": schema})
            return sorted(tuple(str(v).replace(f"{schema}.", "S.") for v in row) for row in cursor.fetchall())

    tables = "(SELECT oid FROM pg_class WHERE relnamespace = %(s)s::regnamespace AND relkind = 'r')"
    signature = {
        "relations": rows("SELECT relname, relkind FROM pg_class WHERE relnamespace = %(s)s::regnamespace"),
        "columns": rows(
            f"""SELECT attrelid::regclass, attname, rank() OVER (PARTITION BY attrelid ORDER BY attnum),
                       format_type(atttypid, atttypmod), attnotnull,
                       attidentity, attgenerated, attstorage, attcollation,
                       pg_get_expr(d.adbin, d.adrelid), col_description(attrelid, attnum)
                FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                WHERE attrelid IN {tables} AND attnum > 0 AND NOT attisdropped"""  # noqa: S608
        ),
        "constraints": rows(
            f"""SELECT conrelid::regclass, conname, contype, pg_get_constraintdef(oid), condeferrable,
                       condeferred, convalidated
                FROM pg_constraint WHERE conrelid IN {tables} AND contype <> 'n'"""  # noqa: S608
        ),
        "indexes": rows(f"SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid IN {tables}"),  # noqa: S608
        "sequences": rows(
            """SELECT sequencename, data_type, start_value, increment_by, min_value, max_value, cache_size,
                      cycle, last_value
               FROM pg_sequences WHERE schemaname = %(s)s"""
        ),
        "identity_owners": rows(
            """SELECT s.relname, d.refobjid::regclass, d.refobjsubid, d.deptype FROM pg_class s
               JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
               WHERE s.relnamespace = %(s)s::regnamespace AND s.relkind = 'S'"""
        ),
        "table_comments": rows(
            f"SELECT oid::regclass, obj_description(oid, 'pg_class') FROM pg_class WHERE oid IN {tables}"  # noqa: S608
        ),
    }
    data = []
    for (table,) in rows(f"SELECT relname FROM pg_class WHERE oid IN {tables}"):  # noqa: S608
        data += rows(
            f"SELECT '{table}', count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) "  # noqa: S608
            f"FROM {quote_schema_name(schema)}.{table} t"
        )
    signature["data"] = data
    return signature


def test_the_lean_clone_copies_the_template_exactly(db):
    """Same tables, columns, defaults, identities and their sequences (type, options, value),
    constraints and indexes under their own names, comments and rows. (django-tenants' own
    clone_schema does not pass this on PostgreSQL 18: it renames unique constraints to
    PostgreSQL's default names and makes an integer identity's sequence bigint.)"""
    with connection.cursor() as cursor:
        cursor.execute(f"COMMENT ON TABLE {TEMPLATE}.workspace_workspacesettings IS 'one row per tenant'")
    assert migrate_fast.schema_clone(TEMPLATE, "clone_lean")
    lean, template = _signature("clone_lean"), _signature(TEMPLATE)
    for part in template:
        assert lean[part] == template[part], (part, set(lean[part]) ^ set(template[part]))
    assert lean["table_comments"] and lean["constraints"] and lean["sequences"]
    assert any(count != "0" for _, count, _ in lean["data"])  # rows were copied (django_migrations…)


def test_a_new_tenant_is_cloned_without_django_tenants_function_and_is_up_to_date(db):
    from tenants.services import tenant_create

    with CaptureQueriesContext(connection) as queries:
        tenant = tenant_create(name="Fresh", slug="fresh-clone")
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "clone_schema(" not in sql and "CREATE OR REPLACE FUNCTION" not in sql
    assert "migrate" not in sql.lower().replace("django_migrations", "")  # no migrate run, no fake
    assert schema_exists(tenant.schema_name)
    assert scan_schemas([tenant.schema_name]).missing == {}


def test_a_template_behind_the_code_gets_its_new_tenants_really_migrated(db, caplog):
    from tenants.services import tenant_create

    _forget(TEMPLATE)
    with caplog.at_level(logging.WARNING, logger="tenants.migrate_fast"):
        tenant = tenant_create(name="Behind", slug="behind-template")
    assert _has(tenant.schema_name)  # recorded by a real migrate of the new schema
    assert scan_schemas([tenant.schema_name]).missing == {}
    assert f"template schema {TEMPLATE} is behind the code (sessions.0001_initial)" in caplog.text


def test_a_template_with_objects_the_lean_clone_skips_uses_django_tenants_clone_installed_once(db):
    from tenants.services import tenant_create

    with connection.cursor() as cursor:
        cursor.execute(f"CREATE VIEW {TEMPLATE}.active_keys AS SELECT 1 AS one")
    assert not migrate_fast.schema_clone(TEMPLATE, "not_made")
    assert not schema_exists("not_made")

    first = tenant_create(name="View one", slug="view-one")
    with CaptureQueriesContext(connection) as queries:
        second = tenant_create(name="View two", slug="view-two")
    for tenant in (first, second):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT one FROM {tenant.schema_name}.active_keys")  # noqa: S608
            assert cursor.fetchone() == (1,)
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "clone_schema(" in sql
    assert "CREATE OR REPLACE FUNCTION" not in sql  # installed by the first, not again
