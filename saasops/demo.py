"""The demo data set `make run` loads once into an empty database: a dozen tenants on
different plans and statuses with owners and six weeks of usage, last month's invoices as
drafts for finance, and staff users (superuser, support, finance).
Credentials are printed and written to .devdata/run/demo-logins.txt."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from lifecycle.services import tenant_provision
from saasops.demo_usage import HISTORY_DAYS, demo_usage_load
from tenants.models import Plan, Tenant, TenantStatus, User
from tenants.services import staff_groups_ensure
from tenants.status import tenant_status_change

DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105 - printed demo login, development only
STAFF_PASSWORD = "staff-pass-2026"  # noqa: S105 - printed demo login, development only

# slug, name, plan, interval, status the demo tenant ends in
DEMO_TENANTS = [
    ("acme", "Acme Corporation", "growth", "monthly", TenantStatus.ACTIVE),
    ("globex", "Globex", "enterprise", "yearly", TenantStatus.ACTIVE),
    ("initech", "Initech", "starter", "monthly", TenantStatus.ACTIVE),
    ("umbrella", "Umbrella Research", "growth", "yearly", TenantStatus.ACTIVE),
    ("hooli", "Hooli", "custom", "yearly", TenantStatus.ACTIVE),
    ("stark", "Stark Industries", "enterprise", "monthly", TenantStatus.ACTIVE),
    ("wayne", "Wayne Enterprises", "growth", "monthly", TenantStatus.PAST_DUE),
    ("wonka", "Wonka Labs", "starter", "monthly", TenantStatus.TRIALING),
    ("cyberdyne", "Cyberdyne Systems", "growth", "monthly", TenantStatus.TRIALING),
    ("soylent", "Soylent Foods", "starter", "monthly", TenantStatus.SUSPENDED),
    ("tyrell", "Tyrell Corporation", "free", "monthly", TenantStatus.ACTIVE),
    ("aperture", "Aperture Science", "starter", "monthly", TenantStatus.CANCELLED),
]
STAFF = [
    ("admin", "admin@saasops.local", None, "staff superuser"),
    ("support", "support@saasops.local", "support", "support staff"),
    ("finance", "finance@saasops.local", "finance", "finance staff"),
]


def logins_path():  # type: ignore[no-untyped-def]
    return settings.BASE_DIR / ".devdata" / "run" / "demo-logins.txt"


@transaction.atomic
def demo_load() -> str:
    """Load the demo set if the database has no customer tenant yet; returns the login text
    (empty when nothing was loaded)."""
    # The readiness audit's probe tenant does not make a database "not empty".
    if Tenant.objects.customers().exclude(slug="readiness-probe").exists():
        return ""
    groups = staff_groups_ensure()
    for username, email, group, _ in STAFF:
        if group is None:
            User.objects.create_superuser(username=username, email=email, password=STAFF_PASSWORD)
        else:
            user = User.objects.create_user(username=username, email=email, password=STAFF_PASSWORD, is_staff=True)
            user.groups.add(groups[group])
    plans = {plan.code: plan for plan in Plan.objects.all()}
    made = []
    for slug, name, plan_code, interval, status in DEMO_TENANTS:
        tenant = tenant_provision(
            key=f"demo:{slug}",
            name=name,
            slug=slug,
            owner_email=f"owner@{slug}.example",
            owner_password=DEMO_PASSWORD,
            plan=plans[plan_code],
            billing_interval=interval,
        )
        if tenant.status == TenantStatus.TRIALING and status != TenantStatus.TRIALING:
            tenant_status_change(tenant=tenant, to=TenantStatus.ACTIVE, reason="demo: trial converted")
        if status not in (TenantStatus.TRIALING, TenantStatus.ACTIVE):
            tenant_status_change(tenant=tenant, to=status, reason="demo data")
        made.append(Tenant.objects.select_related("plan").get(pk=tenant.pk))
    events = demo_usage_load(tenants=made)
    port = getattr(settings, "PORT", 8000)
    lines = [
        *(
            f"{label:<17} {email} / {STAFF_PASSWORD}   http://{settings.BASE_DOMAIN}:{port}/admin/"
            for _, email, _, label in STAFF
        ),
        f"acme owner        owner@acme.example / {DEMO_PASSWORD}   http://acme.{settings.BASE_DOMAIN}:{port}/",
        f"(every demo tenant <slug> has owner@<slug>.example / {DEMO_PASSWORD})",
        f"({events:,} usage events over the last {HISTORY_DAYS} days; last month's invoices await review)",
    ]
    text = "\n".join(lines)
    path = logins_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return text
