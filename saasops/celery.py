"""The Celery app. Tenant context travels with each task (tenant-schemas-celery): the schema
the connection is on when `.delay()` is called is put in the message headers, and the worker
switches to it before the task runs.

Tasks that work inside one tenant are declared with `@tenant_task`; sending one without a
tenant, or a message that arrives without a schema, raises `MissingTenantError` instead of
quietly running in the public schema.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import bootsteps, signals
from tenant_schemas_celery.app import CeleryApp
from tenant_schemas_celery.task import TenantTask

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saasops.settings")

app = CeleryApp("saasops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class MissingTenantError(RuntimeError):
    """A tenant task was sent or run outside any tenant."""


def _current_schema() -> str:
    from django.db import connection

    return getattr(connection, "schema_name", "public")


class RequiresTenantTask(TenantTask):
    abstract = True

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        from django_tenants.utils import get_public_schema_name

        headers = options.get("headers") or {}
        schema = headers.get("_schema_name") or _current_schema()
        if schema == get_public_schema_name():
            raise MissingTenantError(
                f"task {self.name} needs a tenant: call it inside tenant_context(tenant) "
                "or from a request on a tenant host"
            )
        return super().apply_async(args, kwargs, **options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from django_tenants.utils import get_public_schema_name

        if _current_schema() == get_public_schema_name():
            raise MissingTenantError(f"task {self.name} arrived without a tenant schema; refusing to run in public")
        return super().__call__(*args, **kwargs)


def tenant_task(*args: Any, **kwargs: Any) -> Any:
    """`@tenant_task` — like `@app.task`, for tasks that must run inside a tenant schema."""
    kwargs.setdefault("base", RequiresTenantTask)
    return app.task(*args, **kwargs)


# --- Heartbeats: /readyz and the readiness audit read these from Redis. -------------------
HEARTBEAT_INTERVAL = 15


def heartbeat_key(role: str) -> str:
    return f"saasops:heartbeat:{role}"


def write_heartbeat(role: str, ttl: int = 600) -> None:
    from saasops.redis import client

    client().set(heartbeat_key(role), str(time.time()), ex=ttl)


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Writes a heartbeat to Redis every few seconds while the worker consumes."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self.tref = None

    def start(self, worker: Any) -> None:
        write_heartbeat("worker")
        self.tref = worker.timer.call_repeatedly(HEARTBEAT_INTERVAL, write_heartbeat, ("worker",), priority=10)

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


app.steps["worker"].add(WorkerHeartbeat)


@signals.task_prerun.connect
def _bind_task_log_context(task_id: str | None = None, **_: Any) -> None:
    from saasops.logging import request_id_var

    request_id_var.set(f"task:{task_id}")
