"""gunicorn settings: `gunicorn -c saasops/gunicorn.conf.py` (no app argument needed).

Measured on a 2-core machine (docs/BENCHMARKS.md, "Metering"):
- the app is saasops.fastpath:application: Django, with the hot platform endpoints
  (POST /api/v1/gate, POST /api/v1/events) answered without the middleware stack;
- gthread workers with keep-alive: a product backend calling the gate thousands of times a
  second keeps its connections open (a new TCP connection per request cost ~0.3 ms of CPU
  on each side), and a worker's threads overlap one request's database wait with another's
  Python work;
- WEB_CONCURRENCY processes (default: one per core, at least 2) x GUNICORN_THREADS threads
  (default 4).
"""

import multiprocessing
import os

wsgi_app = "saasops.fastpath:application"
bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", max(2, multiprocessing.cpu_count())))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 4))
keepalive = 5
timeout = 30
graceful_timeout = 20
# The control socket's default path is per user, not per server: two servers on one machine
# (a deploy and a benchmark, say) would fight over it.
control_socket_disable = True


def post_worker_init(worker):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    """Before the worker takes requests: let the fast path load the URL modules and check
    itself (the first requests otherwise wait ~0.5 s for that), then move everything loaded
    so far out of the garbage collector's way (gc.freeze: full collections stop walking the
    whole of Django on every run)."""
    import gc

    if getattr(worker.wsgi, "__module__", "") == "saasops.fastpath":
        from saasops import fastpath

        fastpath.prepare()
    gc.collect()
    gc.freeze()
