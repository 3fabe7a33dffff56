"""The production web server: granian (HTTP/1.1 in Rust) serving the WSGI app.

    python -m saasops.serve        # WEB_BIND, WEB_CONCURRENCY, WEB_THREADS (README)

Each worker process loads `saasops.fastpath:worker_app` (the hot platform endpoints
without the middleware stack, everything else plain Django; see fastpath.py), prepared
before it takes requests.

Why granian rather than gunicorn (measured on the 2-core machine, docs/BENCHMARKS.md
"Metering"): around a WSGI app that does nothing, at 2,000 requests/s on keep-alive
connections, gunicorn's gthread workers spent 195 us of CPU a request parsing HTTP and
handing requests to threads, granian 75 us; with the gate behind it, a request cost 553 us
of server CPU under gunicorn and 379 us under granian. On two cores shared with Redis,
PostgreSQL and the load generator that is the difference between keeping up with 2,000
gate calls a second and queueing them.

Threads per worker (WEB_THREADS, default 2): at 2,000 gate calls a second on 2 cores, p99
was 5.5 ms with 1 thread (a slow request holds up the worker), 4.5 ms with 2, 7.6 ms with 4
(the threads contend for the GIL).

Not this server's job: TLS (a proxy or load balancer in front terminates it), static
files (WhiteNoise, inside the app), request timeouts (set them at the proxy).
"""

from __future__ import annotations

import os
import shutil
import sys

from saasops import env

APP = "saasops.fastpath:worker_app"


def _workers() -> int:
    return env.get_int("WEB_CONCURRENCY", max(2, os.cpu_count() or 1), minimum=1, maximum=256)


def command(
    *,
    bind: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    app: str | None = None,
) -> list[str]:
    """The granian command line (saasops.serve and the benchmarks start the same server;
    `app`: another plain WSGI application instead of the prepared default)."""
    address = bind or env.get_str("WEB_BIND", "0.0.0.0:8000")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise env.ConfigError(f"WEB_BIND={address!r} is not host:port (e.g. 0.0.0.0:8000)")
    granian = shutil.which("granian", path=os.path.dirname(sys.executable)) or "granian"
    return [
        granian,
        "--interface", "wsgi",
        *(["--factory", APP] if app is None else [app]),
        "--host", host.strip("[]"),
        "--port", port,
        "--workers", str(workers or _workers()),
        # WSGI runs in these threads; one runtime thread does the HTTP side of a worker.
        "--blocking-threads", str(threads or env.get_int("WEB_THREADS", 2, minimum=1, maximum=256)),
        "--runtime-threads", "1",
        "--http", "1",
        "--no-ws",
        "--backlog", "2048",
        "--respawn-failed-workers",
        "--workers-kill-timeout", "20",
        "--no-access-log",  # the app writes one access line per request (saasops.request)
    ]  # fmt: skip


def main() -> None:
    try:
        cmd = command()
    except env.ConfigError as error:
        env.fail(error)
        return
    os.execvp(cmd[0], cmd)  # noqa: S606 - a fixed command line, no shell involved


if __name__ == "__main__":
    main()
