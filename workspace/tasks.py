"""Workspace tasks. They run inside the tenant schema they were sent from."""

from __future__ import annotations

from django.db import connection

from saasops.celery import tenant_task
from workspace.models import WorkspaceSettings


@tenant_task(name="workspace.describe")
def workspace_describe() -> dict[str, str]:
    """Which schema the task ran in and that schema's workspace name: the probe that shows
    tenant context travels with a task (used by the readiness checks and tests)."""
    return {"schema": getattr(connection, "schema_name", ""), "display_name": WorkspaceSettings.current().display_name}
