"""The demo data set `make run` loads once into an empty database: a dozen tenants with
owners, and staff users. Credentials are printed and written to .devdata/run/demo-logins.txt."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from tenants.models import MemberRole, Tenant, TenantStatus, User
from tenants.services import membership_add, tenant_create

DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105 - printed demo login, development only
STAFF_PASSWORD = "staff-pass-2026"  # noqa: S105 - printed demo login, development only

DEMO_TENANTS = [
    ("acme", "Acme Corporation", TenantStatus.ACTIVE),
    ("globex", "Globex", TenantStatus.ACTIVE),
    ("initech", "Initech", TenantStatus.ACTIVE),
    ("umbrella", "Umbrella Research", TenantStatus.ACTIVE),
    ("hooli", "Hooli", TenantStatus.ACTIVE),
    ("stark", "Stark Industries", TenantStatus.ACTIVE),
    ("wayne", "Wayne Enterprises", TenantStatus.PAST_DUE),
    ("wonka", "Wonka Labs", TenantStatus.TRIALING),
    ("cyberdyne", "Cyberdyne Systems", TenantStatus.TRIALING),
    ("soylent", "Soylent Foods", TenantStatus.SUSPENDED),
    ("tyrell", "Tyrell Corporation", TenantStatus.ACTIVE),
    ("aperture", "Aperture Science", TenantStatus.CANCELLED),
]


def logins_path():  # type: ignore[no-untyped-def]
    return settings.BASE_DIR / ".devdata" / "run" / "demo-logins.txt"


@transaction.atomic
def demo_load() -> str:
    """Load the demo set if the database has no customer tenant yet; returns the login text
    (empty when nothing was loaded)."""
    if Tenant.objects.customers().exists():
        return ""
    admin = User.objects.create_superuser(username="admin", email="admin@saasops.local", password=STAFF_PASSWORD)
    admin.first_name = "Ada"
    admin.save()
    for slug, name, status in DEMO_TENANTS:
        tenant = tenant_create(name=name, slug=slug, status=status)
        owner = User.objects.create_user(
            username=f"owner-{slug}", email=f"owner@{slug}.example", password=DEMO_PASSWORD
        )
        membership_add(tenant=tenant, user=owner, role=MemberRole.OWNER)
    port = getattr(settings, "PORT", 8000)
    lines = [
        f"staff superuser   admin@saasops.local / {STAFF_PASSWORD}   http://{settings.BASE_DOMAIN}:{port}/admin/",
        f"acme owner        owner@acme.example / {DEMO_PASSWORD}   http://acme.{settings.BASE_DOMAIN}:{port}/",
        f"(every demo tenant <slug> has owner@<slug>.example / {DEMO_PASSWORD})",
    ]
    text = "\n".join(lines)
    path = logins_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return text
