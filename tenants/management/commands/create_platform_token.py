"""`manage.py create_platform_token <name>` prints a new platform token once;
`manage.py create_platform_token --revoke <prefix>` revokes one."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.tokens import PREFIX_LENGTH, platform_token_create, platform_token_revoke, platform_tokens_by_prefix


class Command(BaseCommand):
    help = "Create a platform token for the product's backend (shown once), or revoke one by its prefix."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", nargs="?", help="What the token is for, e.g. 'rag-backend production'.")
        parser.add_argument("--revoke", metavar="PREFIX", help="Revoke the active token with this prefix.")

    def handle(self, *args: Any, name: str | None = None, revoke: str | None = None, **options: Any) -> None:
        if bool(name) == bool(revoke):
            raise CommandError("Give either a token name (to create one) or --revoke <prefix>, not both or neither.")
        if revoke:
            self._revoke(revoke.strip())
            return
        try:
            token, raw = platform_token_create(name=name or "")
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(f"Created platform token “{token.name}” (prefix {token.prefix}).")
        self.stdout.write(raw)
        self.stdout.write("Copy it now: it will not be shown again (only its hash is stored).")

    def _revoke(self, prefix: str) -> None:
        # A short prefix could name many tokens; the stored prefix is 12 characters.
        if len(prefix) < 8:
            raise CommandError(
                f"Give at least 8 characters of the prefix (it is {PREFIX_LENGTH} long, e.g. sop_AbCd1234)."
            )
        matches = platform_tokens_by_prefix(prefix=prefix)
        if not matches:
            raise CommandError(f"No active platform token has the prefix {prefix}.")
        if len(matches) > 1:
            names = ", ".join(f"{t.name} ({t.prefix})" for t in matches)
            raise CommandError(f"{len(matches)} active tokens match {prefix}: {names}. Give a longer prefix.")
        token = platform_token_revoke(token=matches[0])
        self.stdout.write(f"Revoked platform token “{token.name}” (prefix {token.prefix}).")
