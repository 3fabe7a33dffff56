"""Celery beat scheduler: schedules from the database (django-celery-beat, edited in admin),
plus a heartbeat in Redis so /readyz and the readiness audit can tell beat is alive."""

from __future__ import annotations

import time
from typing import Any

from django_celery_beat.schedulers import DatabaseScheduler

from saasops.celery import HEARTBEAT_INTERVAL, write_heartbeat


class HeartbeatScheduler(DatabaseScheduler):
    _last_heartbeat = 0.0

    def tick(self, *args: Any, **kwargs: Any) -> float:
        now = time.time()
        if now - self._last_heartbeat >= HEARTBEAT_INTERVAL:
            write_heartbeat("beat")
            self._last_heartbeat = now
        # Wake at least every heartbeat interval even when no task is due for hours.
        return min(super().tick(*args, **kwargs), HEARTBEAT_INTERVAL)
