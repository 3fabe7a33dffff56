"""Tenant schemas at scale: fast creation and a migrate that skips up-to-date schemas.

**Creating a schema** (`tenant_schema_create`, used by `Tenant.create_schema`). django-tenants
clones the template schema and then runs `migrate_schemas --fake` for the new schema. Two
things make that slow, and one makes it unsafe:

- it re-installs its 4,000-line `clone_schema` PL/pgSQL function (`CREATE OR REPLACE`) on
  every tenant. On a long-lived connection that gets slower with every tenant (pg_proc's
  TOAST bloats, the function is recompiled each call): 0.2 s at first, 2.5 s per tenant by
  the 200th. Here the function is installed once and re-installed only when its source
  changes (a checksum is kept in the function's comment);
- the fake migrate builds the whole migration state for nothing (~0.1 s): the clone already
  copied the template's `django_migrations` rows (clone mode DATA), so the new schema is
  complete exactly when the template was. Here we only check that, with the migration files
  on disk, nothing is missing;
- if the template was behind the code, `--fake` would record the missing migrations as
  applied without running them. Here the missing ones are really run on the new schema.

**Migrating every tenant** (`migrate_tenant_schemas`, the `migrate_tenants` command). A no-op
`migrate_schemas` costs about 0.1–0.2 s per schema (state rendering, signals), minutes for
thousands of tenants; a real one 0.5–1.5 s. Here the template is migrated first (always), then
one query per batch of schemas reads every schema's `django_migrations`. A schema that lacks
only shared apps' migrations — the usual case after a deploy — would get nothing from migrate
but the rows (django-tenants' router skips every operation of a non-tenant app there) and
content types (post_migrate): those are written in bulk (`record_applied`), guarded by checks
that nothing in those migrations or among the signal receivers would have done more. Any
other schema behind is migrated for real with django-tenants' own per-schema runner. A last
scan verifies the end state (also catching tenants cloned from the template meanwhile).
"""

from __future__ import annotations

import hashlib
import logging
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connections, transaction
from django.db.migrations.loader import MigrationLoader
from django_tenants.utils import (
    get_creation_fakes_migrations,
    get_public_schema_name,
    get_tenant_database_alias,
    get_tenant_model,
    quote_schema_name,
    schema_exists,
)

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (app label, migration name)


def _connection(using: str) -> Any:
    """The django-tenants database wrapper (set_schema_to_public() and friends)."""
    return connections[using]


# --- which migrations a tenant schema must have ---------------------------------------------


@dataclass(frozen=True)
class DiskMigrations:
    """The migration files on disk (every app: django-tenants records shared apps' migrations
    in tenant schemas too, their operations skipped by the router)."""

    keys: frozenset[Key]
    replaces: dict[Key, tuple[Key, ...]]  # squashed migration -> the migrations it replaces
    # Migrations that a tenant schema only records (see record_only_in_tenant_schemas).
    record_only: frozenset[Key] = frozenset()


# Operations that consult the database router before touching the database (every built-in
# one does; RenameModel is left out because migrate injects a content-type rename after it,
# and content types are a tenant app).
_ROUTER_RESPECTING_MODULES = ("django.db.migrations.operations.", "django.contrib.postgres.operations")


def _operations(operations: Iterable[Any]) -> Iterator[Any]:
    from django.db.migrations.operations import SeparateDatabaseAndState

    for operation in operations:
        yield operation
        if isinstance(operation, SeparateDatabaseAndState):
            yield from _operations(operation.database_operations)


def record_only_in_tenant_schemas(migration: Any) -> bool:
    """True when migrating `migration` in a tenant schema does nothing but record it: its app
    is not a tenant app, so django-tenants' router makes every operation skip the database
    (RunPython and RunSQL included), and it holds nothing that ignores the router."""
    from django.db.migrations import Migration
    from django.db.migrations.operations import RenameModel
    from django_tenants.routers import TenantSyncRouter

    if TenantSyncRouter().app_in_list(migration.app_label, settings.TENANT_APPS):
        return False
    if type(migration).apply is not Migration.apply:
        return False
    return all(
        type(op).__module__.startswith(_ROUTER_RESPECTING_MODULES) and not isinstance(op, RenameModel)
        for op in _operations(migration.operations)
    )


@lru_cache(maxsize=1)
def disk_migrations() -> DiskMigrations:
    from django_tenants.utils import has_multi_type_tenants

    loader = MigrationLoader(None, ignore_no_migrations=True)
    replaces = {
        key: tuple((app, name) for app, name in migration.replaces)
        for key, migration in loader.disk_migrations.items()
        if migration.replaces
    }
    record_only = frozenset(
        key
        for key, migration in loader.disk_migrations.items()
        if not has_multi_type_tenants() and record_only_in_tenant_schemas(migration)
    )
    return DiskMigrations(keys=frozenset(loader.disk_migrations), replaces=replaces, record_only=record_only)


def missing_migrations(applied: Iterable[Key], disk: DiskMigrations | None = None) -> list[Key]:
    """The migrations `migrate` would apply to a schema that has `applied` recorded (forward
    to the latest state, as `migrate` with no target does). Squashed migrations are treated
    the way Django's MigrationLoader.build_graph treats them."""
    disk = disk or disk_migrations()
    applied = set(applied)
    effective = set(applied)
    nodes = set(disk.keys)
    for squashed, replaced in disk.replaces.items():
        statuses = [key in applied for key in replaced]
        if all(statuses):
            effective.add(squashed)
        else:
            effective.discard(squashed)
        if all(statuses) or not any(statuses):
            nodes.difference_update(replaced)  # the squashed migration stands for them
        else:
            nodes.discard(squashed)  # partly applied: Django uses the originals
    return sorted(nodes - effective)


# --- reading many schemas' django_migrations at once ----------------------------------------


@dataclass
class SchemaScan:
    """What one pass over the tenant schemas found."""

    missing: dict[str, list[Key]] = field(default_factory=dict)  # schema -> migrations it lacks
    absent: list[str] = field(default_factory=list)  # Tenant rows whose schema does not exist
    checked: int = 0
    seconds: float = 0.0
    queries: int = 0

    @property
    def behind(self) -> list[str]:
        return list(self.missing)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _applied_batch(cursor: Any, schemas: list[str]) -> dict[str, set[Key]]:
    parts = [
        f"SELECT %s AS schema_name, app, name FROM {quote_schema_name(schema)}.django_migrations"  # noqa: S608
        for schema in schemas
    ]
    cursor.execute(" UNION ALL ".join(parts), schemas)
    applied: dict[str, set[Key]] = {schema: set() for schema in schemas}
    for schema, app, name in cursor.fetchall():
        applied[schema].add((app, name))
    return applied


def scan_schemas(schemas: list[str], *, batch_size: int = 250, using: str | None = None) -> SchemaScan:
    """For each schema, the migrations it lacks — in one catalog query plus one query per
    `batch_size` schemas (a UNION ALL over their django_migrations tables)."""
    started = time.perf_counter()
    using = using or get_tenant_database_alias()
    connection = connections[using]
    disk = disk_migrations()
    scan = SchemaScan(checked=len(schemas))
    if not schemas:
        return scan
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT n.nspname,
                   EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                           WHERE c.relnamespace = n.oid AND c.relname = 'django_migrations'
                             AND c.relkind IN ('r', 'p'))
            FROM pg_catalog.pg_namespace n WHERE n.nspname = ANY(%s)
            """,
            [list(schemas)],
        )
        has_table = dict(cursor.fetchall())
        scan.queries += 1
        scan.absent = [schema for schema in schemas if schema not in has_table]
        readable = [schema for schema in schemas if has_table.get(schema)]
        for schema in schemas:
            if schema in has_table and not has_table[schema]:
                scan.missing[schema] = missing_migrations((), disk)  # never migrated
        for batch in _chunks(readable, batch_size):
            try:
                with transaction.atomic(using=using):  # a savepoint when inside a transaction
                    applied = _applied_batch(cursor, batch)
                scan.queries += 1
            except Exception:
                # A schema dropped since the catalog query: read the batch schema by schema.
                applied = {}
                for schema in batch:
                    try:
                        with transaction.atomic(using=using):
                            applied.update(_applied_batch(cursor, [schema]))
                    except Exception:
                        scan.absent.append(schema)
                    scan.queries += 1
            for schema, keys in applied.items():
                lacking = missing_migrations(keys, disk)
                if lacking:
                    scan.missing[schema] = lacking
    scan.seconds = time.perf_counter() - started
    return scan


# --- migrating the schemas that need it -------------------------------------------------------


def _migrate_options(*, verbosity: int, executor: str | None, database: str) -> dict[str, Any]:
    """The options `migrate_schemas --tenant --noinput` would hand its executor."""
    from django_tenants.management.commands.migrate_schemas import MigrateSchemasCommand

    parser = MigrateSchemasCommand().create_parser("manage.py", "migrate_schemas")
    options = vars(parser.parse_args(["--tenant", "--noinput"]))
    options.update(verbosity=verbosity, executor=executor, database=database, skip_checks=True)
    return options


def _migrate_schema(schema: str, *, options: dict[str, Any], idx: int | None = None, count: int | None = None) -> None:
    """django-tenants' own per-schema runner (what the standard executor calls)."""
    from django_tenants.migration_executors.base import run_migrations

    run_migrations((), options, "standard", schema, idx=idx, count=count)


def _run_executor(schemas: list[str], *, options: dict[str, Any]) -> None:
    """Hand a list of schemas to a non-standard executor (e.g. multiprocessing)."""
    from django_tenants.management.commands.migrate_schemas import GET_EXECUTOR_FUNCTION

    GET_EXECUTOR_FUNCTION(codename=options["executor"])((), options).run_migrations(tenants=list(schemas))


# The signal receivers a real migrate of a tenant schema would run, all mirrored (content
# types) or inert there (permissions: auth is no tenant app; the content-type rename is only
# injected for RenameModel, which is never record-only). Any other receiver: no shortcut.
_KNOWN_RECEIVERS = {
    "post_migrate": {
        "django.contrib.contenttypes.management.create_contenttypes",
        "django.contrib.auth.management.create_permissions",
    },
    "pre_migrate": {"django.contrib.contenttypes.management.inject_rename_contenttypes_operations"},
    "schema_migrated": set(),
    "schema_pre_migration": set(),
}


def record_only_blocker() -> str | None:
    """Why the record-only shortcut cannot be used in this project, or None."""
    from django.db.models.signals import post_migrate, pre_migrate
    from django_tenants.signals import schema_migrated, schema_pre_migration
    from django_tenants.utils import has_multi_type_tenants

    if has_multi_type_tenants():
        return "multi-type tenants"
    signals = {
        "post_migrate": post_migrate,
        "pre_migrate": pre_migrate,
        "schema_migrated": schema_migrated,
        "schema_pre_migration": schema_pre_migration,
    }
    for name, signal in signals.items():
        for entry in signal.receivers:  # every receiver, whatever sender it listens to
            receiver = entry[1]() if isinstance(entry[1], weakref.ReferenceType) else entry[1]
            if receiver is None:
                continue
            target = getattr(receiver, "__wrapped__", receiver)
            dotted = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
            if dotted not in _KNOWN_RECEIVERS[name]:
                return f"{name} receiver {dotted}"
    return None


def _content_types() -> list[tuple[str, str]]:
    """What contenttypes' post_migrate handler makes sure every migrated schema has."""
    from django.apps import apps

    return sorted(
        {
            (model._meta.app_label, str(model._meta.model_name))
            for app_config in apps.get_app_configs()
            if app_config.models_module is not None
            for model in app_config.get_models()
        }
    )


def record_applied(missing: dict[str, list[Key]], *, using: str, batch_size: int = 100) -> None:
    """For schemas whose missing migrations are all record-only: what `migrate` would leave
    behind there, in one statement batch per `batch_size` schemas and one transaction each —
    the django_migrations rows (for a squash: the migrations it replaces, then itself, as
    Django records them) and any content type post_migrate would add."""
    disk = disk_migrations()
    content_types = _content_types()
    ct_values = ", ".join(["(%s, %s)"] * len(content_types))
    ct_params = [value for pair in content_types for value in pair]
    connection = connections[using]
    for batch in _chunks(list(missing), batch_size):
        sql: list[str] = []
        params: list[Any] = []
        for schema in batch:
            keys: list[Key] = []
            for key in missing[schema]:
                keys.extend(disk.replaces.get(key, ()))
                keys.append(key)
            quoted = quote_schema_name(schema)
            sql.append(
                f"INSERT INTO {quoted}.django_migrations (app, name, applied) "  # noqa: S608
                f"VALUES {', '.join(['(%s, %s, now())'] * len(keys))}"
            )
            params += [value for key in keys for value in key]
            sql.append(
                f"INSERT INTO {quoted}.django_content_type (app_label, model) VALUES {ct_values} "  # noqa: S608
                "ON CONFLICT DO NOTHING"
            )
            params += ct_params
        with transaction.atomic(using=using), connection.cursor() as cursor:
            cursor.execute(";\n".join(sql), params)


class _Writable(Protocol):
    def write(self, msg: str, /) -> Any: ...

    def flush(self) -> Any: ...


@dataclass
class MigrateReport:
    template: str | None = None
    checked: int = 0
    migrated: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)  # brought up to date by record_applied
    failed: dict[str, str] = field(default_factory=dict)
    scans: list[SchemaScan] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def _tenant_schemas(*, using: str) -> list[str]:
    public, template = get_public_schema_name(), getattr(settings, "TENANT_BASE_SCHEMA", None)
    return list(
        get_tenant_model()
        .objects.using(using)
        .exclude(schema_name__in=[public, template])
        .order_by("pk")
        .values_list("schema_name", flat=True)
    )


def _describe(keys: list[Key], limit: int = 3) -> str:
    shown = ", ".join(f"{app}.{name}" for app, name in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def migrate_tenant_schemas(
    *,
    stdout: _Writable | None = None,
    verbosity: int = 1,
    executor: str | None = None,
    batch_size: int = 250,
    check: bool = False,
    passes: int = 3,
    record_only: bool = True,
    using: str | None = None,
) -> MigrateReport:
    """Bring every tenant schema up to date: the template first (always migrated), then only
    the schemas a scan finds behind. A schema that lacks only record-only migrations (shared
    apps' migrations, which the router skips in tenant schemas) gets its rows recorded in bulk
    instead of a migrate run (`record_only=False`: always run migrate). `check` only reports.
    Stops at the first failure (a migration that fails on one schema usually fails on all),
    recorded in `failed`."""
    started = time.perf_counter()
    using = using or get_tenant_database_alias()
    report = MigrateReport()
    blocker = record_only_blocker() if record_only else "disabled (--full)"
    disk = disk_migrations()
    options = _migrate_options(verbosity=max(0, verbosity - 1), executor=executor, database=using)

    def say(message: str) -> None:
        if stdout is not None and verbosity >= 1:
            stdout.write(f"migrate_tenants: {message}\n")
            stdout.flush()

    template = getattr(settings, "TENANT_BASE_SCHEMA", None)
    if template and get_tenant_model().objects.using(using).filter(schema_name=template).exists():
        report.template = template
        if not schema_exists(template, using):
            report.failed[template] = "the template schema does not exist (run bootstrap)"
        elif check:
            lacking = scan_schemas([template], using=using).missing.get(template)
            if lacking:
                report.failed[template] = f"behind: {_describe(lacking)}"
        else:
            tick = time.perf_counter()
            try:
                _migrate_schema(template, options=options)
                clone_function_ensure(using=using)
            except Exception as exc:
                report.failed[template] = f"{type(exc).__name__}: {exc}"
            else:
                report.migrated.append(template)
                say(f"template {template} migrated in {time.perf_counter() - tick:.1f} s")
    if report.failed and not check:
        report.seconds = time.perf_counter() - started
        return report

    stop = False  # a migration failed: no further passes
    for attempt in range(1, passes + 1):
        schemas = _tenant_schemas(using=using)
        scan = scan_schemas(schemas, batch_size=batch_size, using=using)
        report.scans.append(scan)
        report.checked = len(schemas)
        behind = [schema for schema in schemas if schema in scan.missing]
        # A cancelled tenant without a schema was deleted after its retention period (the row
        # is kept, anonymised, for the invoices that point at it): nothing to migrate.
        deleted = set(
            get_tenant_model()
            .objects.using(using)
            .filter(schema_name__in=scan.absent, status="cancelled")
            .values_list("schema_name", flat=True)
        )
        for schema in scan.absent:
            if schema not in deleted:
                report.failed[schema] = "schema does not exist (manage.py create_missing_schemas)"
        say(
            f"{'checked' if attempt == 1 else 're-checked'} {len(schemas)} tenant schemas in {scan.seconds:.2f} s "
            f"({scan.queries} queries): {len(schemas) - len(behind) - len(scan.absent)} up to date, "
            f"{len(behind)} behind" + (f", {len(scan.absent)} missing" if scan.absent else "")
        )
        if not behind:
            break
        if check:
            for schema in behind:
                report.failed[schema] = f"behind: {_describe(scan.missing[schema])}"
            break
        if attempt == passes:
            for schema in behind:
                report.failed[schema] = f"still behind after {passes} passes: {_describe(scan.missing[schema])}"
            break
        if blocker is None:
            recordable = {s: scan.missing[s] for s in behind if set(scan.missing[s]) <= disk.record_only}
            if recordable:
                tick = time.perf_counter()
                try:
                    record_applied(recordable, using=using)
                except Exception as exc:
                    log.exception("recording migrations failed; migrating those schemas instead")
                    say(f"recording failed ({type(exc).__name__}: {exc}); running migrate for those schemas")
                else:
                    report.recorded.extend(recordable)
                    behind = [schema for schema in behind if schema not in recordable]
                    say(
                        f"recorded shared-app migrations in {len(recordable)} schemas in "
                        f"{time.perf_counter() - tick:.2f} s (the router skips their operations in tenant schemas)"
                    )
        elif attempt == 1 and record_only:
            say(f"record-only shortcut not used: {blocker}")
        if not behind:
            continue
        if options["executor"] and options["executor"] != "standard":
            say(f"migrating {len(behind)} schemas with the {options['executor']} executor")
            try:
                _run_executor(behind, options=options)
            except Exception as exc:
                report.failed[",".join(behind)] = f"{type(exc).__name__}: {exc}"
                break
            report.migrated.extend(behind)
            continue
        for idx, schema in enumerate(behind):
            tick = time.perf_counter()
            try:
                _migrate_schema(schema, options=options, idx=idx, count=len(behind))
            except Exception as exc:
                report.failed[schema] = f"{type(exc).__name__}: {exc}"
                log.exception("migrating schema %s failed", schema)
                stop = True
                break
            report.migrated.append(schema)
            say(
                f"[{idx + 1}/{len(behind)}] {schema} migrated in {time.perf_counter() - tick:.1f} s "
                f"({_describe(scan.missing[schema])})"
            )
        if stop:
            break
    _connection(using).set_schema_to_public()
    report.seconds = time.perf_counter() - started
    return report


# --- creating a tenant schema -----------------------------------------------------------------

# Everything a template schema may hold for the lean clone below; anything else (views,
# functions, triggers, types, partitions, policies, grants, other owners, serial columns…)
# sends the clone to django-tenants' general clone_schema function instead.
_UNSUPPORTED_SQL = """
SELECT
  (SELECT count(*) FROM pg_catalog.pg_class c WHERE c.relnamespace = %(ns)s AND (
       c.relkind NOT IN ('r', 'i', 'S')
       OR c.relowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
       OR c.relacl IS NOT NULL OR c.relrowsecurity OR c.relispartition OR c.relhassubclass
       OR c.relpersistence <> 'p' OR c.reltablespace <> 0 OR (c.relkind = 'r' AND c.reloptions IS NOT NULL)
       OR (c.relkind = 'r' AND c.relam <> (SELECT oid FROM pg_catalog.pg_am WHERE amname = 'heap'))
       OR (c.relkind = 'S' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
            WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'i'))))
+ (SELECT count(*) FROM pg_catalog.pg_proc WHERE pronamespace = %(ns)s)
+ (SELECT count(*) FROM pg_catalog.pg_type t WHERE t.typnamespace = %(ns)s AND t.typrelid = 0 AND NOT EXISTS (
       SELECT 1 FROM pg_catalog.pg_type r WHERE r.oid = t.typelem AND r.typrelid <> 0))
+ (SELECT count(*) FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
       WHERE c.relnamespace = %(ns)s AND NOT g.tgisinternal)
+ (SELECT count(*) FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
       WHERE c.relnamespace = %(ns)s)
+ (SELECT count(*) FROM pg_catalog.pg_rewrite w JOIN pg_catalog.pg_class c ON c.oid = w.ev_class
       WHERE c.relnamespace = %(ns)s)
+ (SELECT count(*) FROM pg_catalog.pg_statistic_ext WHERE stxnamespace = %(ns)s)
+ (SELECT count(*) FROM pg_catalog.pg_collation WHERE collnamespace = %(ns)s)
+ (SELECT count(*) FROM pg_catalog.pg_operator WHERE oprnamespace = %(ns)s)
+ (SELECT count(*) FROM pg_catalog.pg_extension WHERE extnamespace = %(ns)s)
+ (SELECT count(*) FROM pg_catalog.pg_attrdef ad JOIN pg_catalog.pg_class c ON c.oid = ad.adrelid
       WHERE c.relnamespace = %(ns)s AND pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) ILIKE '%%nextval(%%')
+ (SELECT count(*) FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
       WHERE c.relnamespace = %(ns)s AND a.attacl IS NOT NULL)
+ (SELECT count(*) FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
       WHERE c.relnamespace = %(ns)s AND k.contype NOT IN ('p', 'u', 'f', 'c', 'n', 'x'))
+ (SELECT count(*) FROM pg_catalog.pg_description ds JOIN pg_catalog.pg_class c ON c.oid = ds.objoid
       WHERE ds.classoid = 'pg_catalog.pg_class'::regclass AND c.relnamespace = %(ns)s AND c.relkind <> 'r')
"""


class CloneUnsupported(Exception):
    """The template holds something the lean clone does not copy; use django-tenants' clone."""


def _qualified(schema: str, name: str) -> str:
    return f"{quote_schema_name(schema)}.{_quote(name)}"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _clone_statements(cursor: Any, base: str, new: str) -> list[str]:
    """The DDL and data copy that make `new` a copy of `base`, read from the catalogs with a
    handful of indexed queries. Raises CloneUnsupported before anything is written."""
    cursor.execute("SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = %s", [base])
    row = cursor.fetchone()
    if row is None:
        raise CloneUnsupported(f"schema {base} does not exist")
    ns = row[0]
    # A template migration that is half done (its DDL made, its django_migrations row not yet)
    # cannot commit while this transaction holds this lock: what is read next is a consistent
    # state. (A migration already holding one of the tables makes this wait or deadlock, and
    # PostgreSQL then aborts one of the two: never a half-copied schema.)
    cursor.execute(f"LOCK TABLE {_qualified(base, 'django_migrations')} IN SHARE MODE")
    cursor.execute(_UNSUPPORTED_SQL, {"ns": ns})
    if cursor.fetchone()[0]:
        raise CloneUnsupported(f"schema {base} holds objects the lean clone does not copy")

    cursor.execute(
        "SELECT c.oid, c.relname, pg_catalog.obj_description(c.oid, 'pg_class') FROM pg_catalog.pg_class c "
        "WHERE c.relnamespace = %s AND c.relkind = 'r' ORDER BY c.relname",
        [ns],
    )
    tables = {oid: (name, comment) for oid, name, comment in cursor.fetchall()}
    oids = list(tables)
    cursor.execute(
        "SELECT attrelid, attname, attgenerated FROM pg_catalog.pg_attribute "
        "WHERE attrelid = ANY(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attrelid, attnum",
        [oids],
    )
    columns: dict[int, list[str]] = {oid: [] for oid in oids}
    for oid, name, generated in cursor.fetchall():
        if not generated:
            columns[oid].append(name)
    cursor.execute(
        """
        SELECT d.refobjid, a.attname, a.attidentity, s.relname, q.seqstart, q.seqincrement, q.seqmin, q.seqmax,
               q.seqcache, q.seqcycle, pg_catalog.pg_sequence_last_value(s.oid)
        FROM pg_catalog.pg_class s
        JOIN pg_catalog.pg_sequence q ON q.seqrelid = s.oid
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = s.oid
             AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'i'
        JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE s.relnamespace = %s AND s.relkind = 'S'
        """,
        [ns],
    )
    identities = cursor.fetchall()
    cursor.execute(
        """
        SELECT k.conrelid, k.conname, k.contype, pg_catalog.pg_get_constraintdef(k.oid),
               r.relnamespace = %s, r.relname, k.confrelid::regclass::text
        FROM pg_catalog.pg_constraint k LEFT JOIN pg_catalog.pg_class r ON r.oid = k.confrelid
        WHERE k.conrelid = ANY(%s) AND k.contype IN ('p', 'u', 'x', 'f')
        ORDER BY k.contype = 'f', k.conrelid, k.conname
        """,
        [ns, oids],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        """
        SELECT i.indrelid, pg_catalog.quote_ident(ic.relname), i.indisunique, pg_catalog.pg_get_indexdef(i.indexrelid),
               i.indrelid::regclass::text
        FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
        WHERE i.indrelid = ANY(%s) AND NOT EXISTS (
            SELECT 1 FROM pg_catalog.pg_constraint k
            WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'))
        ORDER BY ic.relname
        """,
        [oids],
    )
    indexes = cursor.fetchall()

    like = (
        "INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS INCLUDING COMMENTS "
        "INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING STATISTICS"
    )
    sql = [f"CREATE SCHEMA {quote_schema_name(new)}"]
    for name, comment in tables.values():
        sql.append(f"CREATE TABLE {_qualified(new, name)} (LIKE {_qualified(base, name)} {like})")
        if comment is not None:
            sql.append(f"COMMENT ON TABLE {_qualified(new, name)} IS {_literal(comment)}")
    for oid, (name, _) in tables.items():  # data before indexes and constraints: faster
        cols = ", ".join(_quote(c) for c in columns[oid])
        sql.append(
            f"INSERT INTO {_qualified(new, name)} ({cols}) SELECT {cols} FROM {_qualified(base, name)}"  # noqa: S608
        )
    for table_oid, column, kind, seq, start, inc, low, high, cache, cycle, last in identities:
        mode = "ALWAYS" if kind == "a" else "BY DEFAULT"
        sql.append(
            f"ALTER TABLE {_qualified(new, tables[table_oid][0])} ALTER COLUMN {_quote(column)} ADD GENERATED {mode} "
            f"AS IDENTITY (SEQUENCE NAME {_qualified(new, seq)} START WITH {int(start)} INCREMENT BY {int(inc)} "
            f"MINVALUE {int(low)} MAXVALUE {int(high)} CACHE {int(cache)} {'CYCLE' if cycle else 'NO CYCLE'})"
        )
        if last is not None:
            sql.append(f"SELECT pg_catalog.setval({_literal(_qualified(new, seq))}, {int(last)}, true)")
    for table_oid, name, kind, definition, same_schema, ref_name, ref_text in constraints:
        if kind == "f" and same_schema:
            old = f" REFERENCES {ref_text}("
            if definition.count(old) != 1:
                raise CloneUnsupported(f"cannot re-point foreign key {name}: {definition}")
            definition = definition.replace(old, f" REFERENCES {_qualified(new, ref_name)}(")
        sql.append(f"ALTER TABLE {_qualified(new, tables[table_oid][0])} ADD CONSTRAINT {_quote(name)} {definition}")
    for table_oid, quoted_name, unique, definition, table_text in indexes:
        prefix = f"CREATE {'UNIQUE ' if unique else ''}INDEX {quoted_name} ON {table_text} USING "
        if not definition.startswith(prefix):
            raise CloneUnsupported(f"unexpected index definition: {definition}")
        sql.append(
            f"CREATE {'UNIQUE ' if unique else ''}INDEX {quoted_name} ON {_qualified(new, tables[table_oid][0])} USING "
            + definition[len(prefix) :]
        )
    return sql


def schema_clone(base: str, new: str, *, using: str | None = None) -> bool:
    """Copy schema `base` (structure and rows) to a new schema `new`, in the caller's
    transaction. Returns False (having written nothing) when the template holds objects
    this lean clone does not handle; the caller then uses django-tenants' clone."""
    connection = connections[using or get_tenant_database_alias()]
    with connection.cursor() as cursor:
        try:
            statements = _clone_statements(cursor, base, new)
        except CloneUnsupported as exc:
            log.info("lean clone not used: %s", exc)
            return False
        cursor.execute(";\n".join(statements))
    return True


def _clone_function_sql(using: str) -> tuple[str, str]:
    from django_tenants.clone import CLONE_SCHEMA_FUNCTION

    db_user = settings.DATABASES[using].get("USER", None) or "postgres"
    sql = CLONE_SCHEMA_FUNCTION.format(db_user=db_user)
    return sql, "django-tenants clone_schema sha256:" + hashlib.sha256(sql.encode()).hexdigest()


_CLONE_FUNCTION_LOCK = 0x5AA5_0C10  # pg_advisory_xact_lock key: one installer at a time


def clone_function_ensure(*, using: str | None = None) -> bool:
    """Install django-tenants' clone_schema function unless this exact version already is.
    Returns True when it (re)installed it. Safe to call concurrently (advisory lock)."""
    using = using or get_tenant_database_alias()
    connection = connections[using]
    sql, marker = _clone_function_sql(using)
    check = """
        SELECT pg_catalog.obj_description(p.oid, 'pg_proc') FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND p.proname = 'clone_schema'
    """
    with connection.cursor() as cursor:
        cursor.execute(check)
        if any(row[0] == marker for row in cursor.fetchall()):
            return False
        with transaction.atomic(using=using):
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CLONE_FUNCTION_LOCK])
            cursor.execute(check)
            if any(row[0] == marker for row in cursor.fetchall()):
                return False
            cursor.execute(sql)
            cursor.execute(
                "SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p "
                "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public' AND p.proname = 'clone_schema'"
            )
            for (signature,) in cursor.fetchall():
                cursor.execute(f"COMMENT ON FUNCTION {signature} IS %s", [marker])
    return True


def tenant_schema_create(
    tenant: Any, *, check_if_exists: bool = False, sync_schema: bool = True, verbosity: int = 1
) -> bool:
    """`TenantMixin.create_schema`, fast: copy the template with a few catalog queries and one
    batch of DDL (django-tenants' clone function when the template holds objects that copy
    does not handle), then run for real only the migrations the template lacked (normally
    none) instead of a `migrate_schemas --fake` that would mark them applied unrun. Falls
    back to django-tenants whenever the template is not used (no template, or NODATA)."""
    from django_tenants.models import TenantMixin
    from django_tenants.postgresql_backend.base import _check_schema_name

    using = get_tenant_database_alias()
    connection = _connection(using)
    _check_schema_name(tenant.schema_name)
    if check_if_exists and schema_exists(tenant.schema_name, using):
        return False
    base = tenant.get_base_schema() if get_creation_fakes_migrations() else None
    if not (sync_schema and isinstance(base, str) and tenant.clone_mode == "DATA" and schema_exists(base, using)):
        TenantMixin.create_schema(tenant, check_if_exists=False, sync_schema=sync_schema, verbosity=verbosity)
        return True
    connection.set_schema_to_public()
    if schema_exists(tenant.schema_name, using, case_sensitive=False):
        raise ValidationError("New schema name already exists")
    with transaction.atomic(using=using):  # a savepoint: a failed lean clone leaves nothing behind
        cloned = schema_clone(base, tenant.schema_name, using=using)
    if not cloned:
        clone_function_ensure(using=using)
        with connection.cursor() as cursor:
            cursor.execute("SELECT clone_schema(%s, %s, 'DATA')", [base, tenant.schema_name])
    lacking = scan_schemas([tenant.schema_name], using=using).missing.get(tenant.schema_name)
    if lacking:
        log.warning(
            "template schema %s is behind the code (%s): migrating %s for real; run migrate_tenants",
            base,
            _describe(lacking),
            tenant.schema_name,
        )
        call_command(
            "migrate_schemas", tenant=True, schema_name=tenant.schema_name, interactive=False, verbosity=verbosity
        )
    connection.set_schema_to_public()
    return True
