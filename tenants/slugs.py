"""Workspace slugs: the DNS label of a tenant's host and (with - as _) its schema name."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

SLUG_MIN, SLUG_MAX = 3, 40
_SLUG_RE = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")

# Host labels and schema names that belong to us, PostgreSQL or common infrastructure.
RESERVED_SLUGS = frozenset(
    """
    public www admin api app apps auth billing blog cdn dashboard docs help status support
    mail email smtp static media assets metrics healthz readyz signup login logout account
    accounts pricing about contact security settings staff root system internal test tests
    template tenant tenants saasops information_schema postgres pg stripe webhook webhooks
    """.split()
)


def validate_slug(value: str) -> None:
    """Refuse a slug that cannot be a host label and schema name, with a message that says why."""
    if not isinstance(value, str):
        raise ValidationError("The workspace address must be text.", code="invalid")
    if not SLUG_MIN <= len(value) <= SLUG_MAX:
        raise ValidationError(f"The workspace address must be {SLUG_MIN} to {SLUG_MAX} characters long.", code="length")
    if not _SLUG_RE.match(value) or "--" in value:
        raise ValidationError(
            "Use lowercase letters, digits and single hyphens; start with a letter and end with a letter or digit.",
            code="charset",
        )
    if value in RESERVED_SLUGS or value.startswith("pg-"):
        raise ValidationError(f"“{value}” is reserved; please choose another address.", code="reserved")


def schema_name_for(slug: str) -> str:
    return slug.replace("-", "_")


def slug_suggestion(text: str) -> str:
    """A valid slug derived from a company name ("ACME Corp." -> "acme-corp")."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    slug = re.sub(r"^[^a-z]+", "", slug)[:SLUG_MAX].strip("-")
    if len(slug) < SLUG_MIN:
        slug = (slug + "-team").strip("-")
    if slug in RESERVED_SLUGS:
        slug = f"{slug}-team"
    return slug


def slug_alternative(slug: str) -> str:
    """A nearby slug to suggest when one is taken (the caller checks it is free)."""
    import secrets

    base = slug[: SLUG_MAX - 5].rstrip("-")
    return f"{base}-{secrets.randbelow(9000) + 1000}"
