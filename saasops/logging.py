"""Log context: every record carries the request id (or task id) and the tenant schema."""

from __future__ import annotations

import contextvars
import logging

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        try:
            from django.db import connection

            record.tenant = getattr(connection, "schema_name", "-")
        except Exception:  # logging must never fail, even before Django is set up
            record.tenant = "-"
        return True
