"""Bring a database to a runnable state: migrate the public schema, make sure the public
and template tenants exist, migrate every tenant schema, install default schedules, and
(with --demo) load the demo data set into an empty database. Safe to run every start."""

from __future__ import annotations

import time
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand

from billing.schedules import schedules_ensure as billing_schedules_ensure
from lifecycle.schedules import schedules_ensure as lifecycle_schedules_ensure
from operations.services.schedules import schedules_ensure as operations_schedules_ensure
from saasops import demo
from tenants.services import public_tenant_ensure, staff_groups_ensure, template_tenant_ensure
from workspace.schedules import schedules_ensure as workspace_schedules_ensure


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--demo", action="store_true", help="load the demo data set if no tenant exists yet")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
        public_tenant_ensure()
        template_tenant_ensure()
        # Template first, then only the tenant schemas that lack a migration (tenants/migrate_fast.py):
        # seconds with thousands of tenants, where migrate_schemas --tenant takes minutes.
        call_command("migrate_tenants", verbosity=options["verbosity"], stdout=self.stdout)
        staff_groups_ensure()
        billing_schedules_ensure()
        lifecycle_schedules_ensure()
        operations_schedules_ensure()
        workspace_schedules_ensure()
        if options["demo"]:
            logins = demo.demo_load()
            if logins:
                self.stdout.write("demo data loaded; logins:\n" + logins)
        self.stdout.write(f"bootstrap done in {time.monotonic() - started:.1f} s")
