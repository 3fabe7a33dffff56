"""gunicorn settings (`gunicorn -c saasops/gunicorn.conf.py saasops.wsgi:application`).

WEB_CONCURRENCY sets the number of worker processes (default: 2 per core, at least 2).
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", max(2, multiprocessing.cpu_count() * 2)))
worker_class = "sync"
timeout = 30
graceful_timeout = 20
