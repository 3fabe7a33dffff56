"""Import a provider bill: `manage.py import_bill <file> [--provider openai|aws]`.

A malformed file is refused with the row and column at fault and nothing is stored; the same
file imported twice adds nothing the second time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from operations.importers import BillFormatError
from operations.services.bills import bill_import


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", help="CSV file (or .csv.gz): an OpenAI usage/cost export or an AWS CUR")
        parser.add_argument("--provider", choices=("openai", "aws"), help="default: told by the header")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        try:
            result = bill_import(raw=raw, file_name=path.name, provider=options["provider"])
        except BillFormatError as exc:
            raise CommandError(f"{path.name}: {exc}; nothing was imported") from None
        self.stdout.write(f"{path.name}: {result.summary}")
