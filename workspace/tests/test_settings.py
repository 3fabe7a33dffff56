"""Settings: name, billing email and the prompt template, with validation and history."""

import pytest

from billing.models import BillingProfile
from tenants.config import config_effective
from tenants.models import TenantConfigVersion
from workspace.models import WorkspaceSettings

pytestmark = pytest.mark.django_db


def test_rename_workspace(as_role, tenant_a):
    client = as_role("admin")
    assert client.post("/settings/", {"action": "name", "name": "  Acme <Labs>  "}).status_code == 302
    tenant_a.refresh_from_db()
    assert tenant_a.name == "Acme <Labs>" and WorkspaceSettings.current().display_name == "Acme <Labs>"
    page = client.get("/").content.decode()
    assert "<title>Acme &lt;Labs&gt; · saasops</title>" in page and "Acme <Labs>" not in page


@pytest.mark.parametrize("name, message", [("", "This field is required."), ("x" * 201, "at most 200 characters")])
def test_bad_names(as_role, tenant_a, name, message):
    response = as_role("owner").post("/settings/", {"action": "name", "name": name})
    assert response.status_code == 400 and message in response.content.decode()
    tenant_a.refresh_from_db()
    assert tenant_a.name == "Tenant A"


def test_billing_email(as_role, tenant_a):
    client = as_role("billing")
    assert client.post("/settings/", {"action": "billing_email", "billing_email": "ap@acme.test"}).status_code == 302
    assert BillingProfile.objects.get(tenant=tenant_a).billing_email == "ap@acme.test"
    assert "ap@acme.test" in as_role("owner").get("/billing/").content.decode()
    assert client.post("/billing/", {"billing_email": ""}).status_code == 302  # empty: invoices go to the owner
    assert BillingProfile.objects.get(tenant=tenant_a).billing_email == ""


@pytest.mark.parametrize(
    "email, message",
    [
        ("not an email", "Enter a valid email address."),
        ("a" * 250 + "@x.test", "at most 254 characters"),
        ('"><script>alert(1)</script>@x.test', "Enter a valid email address."),
    ],
)
@pytest.mark.parametrize("path, extra", [("/billing/", {}), ("/settings/", {"action": "billing_email"})])
def test_bad_billing_email(as_role, tenant_a, email, message, path, extra):
    response = as_role("owner").post(path, {"billing_email": email, **extra})
    assert response.status_code == 400
    text = response.content.decode()
    assert message in text and "<script>alert(1)" not in text
    assert BillingProfile.objects.get(tenant=tenant_a).billing_email == ""


def test_prompt_template_versions_and_history(as_role, tenant_a, django_capture_on_commit_callbacks):
    client = as_role("owner")
    before = TenantConfigVersion.objects.filter(tenant=tenant_a).count()
    template = "Answer as <b>{company}</b>'s assistant."
    with django_capture_on_commit_callbacks(execute=True):  # the config cache is dropped on commit
        assert client.post("/settings/", {"action": "prompt", "prompt_template": template}).status_code == 302
    assert config_effective(tenant=tenant_a)["config"]["prompt_template"] == template
    assert client.post("/settings/", {"action": "prompt", "prompt_template": template}).status_code == 302
    assert TenantConfigVersion.objects.filter(tenant=tenant_a).count() == before + 1  # no empty version
    page = client.get("/settings/").content.decode()
    assert f"v{before + 1}" in page and "Changed in the workspace" in page and "owner@tenant-a.test" in page
    assert "<b>{company}</b>" not in page and "&lt;b&gt;{company}&lt;/b&gt;" in page


@pytest.mark.parametrize(
    "template, message", [("", "must be 1 to 8,000 characters"), ("x" * 8001, "must be 1 to 8,000 characters")]
)
def test_bad_prompt_template(as_role, tenant_a, template, message):
    before = TenantConfigVersion.objects.filter(tenant=tenant_a).count()
    response = as_role("admin").post("/settings/", {"action": "prompt", "prompt_template": template})
    assert response.status_code == 400 and message in response.content.decode()
    assert TenantConfigVersion.objects.filter(tenant=tenant_a).count() == before


def test_unknown_action_changes_nothing(as_role, tenant_a):
    assert as_role("owner").post("/settings/", {"action": "plan", "plan": "enterprise"}).status_code == 302
    tenant_a.refresh_from_db()
    assert tenant_a.plan.code == "growth"
