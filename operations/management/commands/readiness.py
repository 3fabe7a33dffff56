"""Run the readiness audit now and print each check: `manage.py readiness [--check CODE]`.
Exits 1 when a check fails (so a deploy pipeline can gate on it)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand

from operations.models import CheckStatus, Trigger
from operations.services.readiness import CHECKS, readiness_run


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--check", action="append", choices=list(CHECKS), help="run only this check (repeatable)")
        parser.add_argument("--skip", action="append", choices=list(CHECKS), help="record this check as skipped")
        parser.add_argument("--evidence", action="store_true", help="print each check's evidence as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        run = readiness_run(trigger=Trigger.COMMAND, only=options["check"], skip=options["skip"])
        marks = {CheckStatus.PASS: "PASS", CheckStatus.FAIL: "FAIL", CheckStatus.SKIPPED: "SKIP"}
        for result in run.results.order_by("id"):
            title = CHECKS[result.check_code][0]
            self.stdout.write(f"{marks[CheckStatus(result.status)]}  {title}: {result.value}")
            self.stdout.write(f"      {result.message}")
            if options["evidence"]:
                self.stdout.write("      " + json.dumps(result.evidence, default=str, sort_keys=True))
        self.stdout.write(f"readiness audit #{run.pk}: {run.status}")
        if run.status == CheckStatus.FAIL:
            raise SystemExit(1)
