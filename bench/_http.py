"""HTTP load helpers of the metering benchmarks (not a benchmark: the name starts with _).

- `AppServer`: the app under the production server (saasops/serve.py) on 127.0.0.1 (production settings: DEBUG=false),
  started and stopped by PID.
- `fixed_rate()`: an open-loop client. Request i is due at start + i / rate whatever
  happened to earlier ones, and its latency is measured from that due time (so a stalled
  server is not hidden by a client that waits for it: no coordinated omission).
- `closed_loop()`: N clients, each sending its next request as soon as the last answered.

Both are a small asyncio HTTP/1.1 client over raw sockets with pre-built request bytes and
keep-alive (reconnecting when the server says `Connection: close`): the load generator
shares the two cores with the server, so it has to be cheap.
"""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Production settings (DEBUG=false) for a server on plain http on this machine."""
    env = dict(os.environ)
    env.update(
        {
            "DEBUG": "false",
            "SECRET_KEY": "bench-" + secrets.token_urlsafe(48),
            "SECURE_SSL_REDIRECT": "false",
            "BASE_DOMAIN": "localhost",
            "LOG_LEVEL": env.get("BENCH_LOG_LEVEL", "WARNING"),
            "DJANGO_SETTINGS_MODULE": "saasops.settings",
        }
    )
    env.update(extra or {})
    return env


class AppServer:
    """The production web server (saasops/serve.py: granian, the prepared fast-path app) on
    127.0.0.1:<free port>; `app` names another WSGI application, `args` adds to the command."""

    def __init__(self, app: str | None = None, args: Sequence[str] = (), log: Path | None = None):
        self.app = app
        self.args = list(args)
        self.port = free_port()
        self.log_path = log or Path(f"/tmp/saasops-bench-server-{os.getpid()}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> AppServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        from saasops.serve import command

        cmd = [*command(bind=f"{HOST}:{self.port}", app=self.app), *self.args]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=server_env(), stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the web server exited ({self.proc.returncode}); see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/healthz", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the web server did not answer /healthz in 60 s; see {self.log_path}")
            time.sleep(0.2)

    def warm(self, request: bytes, n: int = 200) -> None:
        """Send `request` n times (every worker loads its code, caches and connections)."""
        asyncio.run(_warm(self.port, request, n))

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._log.close()

    def worker_pids(self) -> list[int]:
        if self.proc is None:
            return []
        # The server's main process (it supervises) and its workers.
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True)
        return [self.proc.pid, *(int(p) for p in out.stdout.split())]


def noop_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """A WSGI app that reads the body and answers a small JSON document: served by the same
    server settings, it shows what the client, the server and the loopback cost on their own."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    body = b'{"allowed":true}'
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def http_request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """The bytes of one HTTP/1.1 request (keep-alive) for the public host."""
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: keep-alive"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def exchange(port: int, request: bytes, timeout: float = 10) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request on its own connection: (status, headers, body)."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before the headers")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = [(n.strip(), v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
        length = int(next((v for n, v in headers if n.lower() == "content-length"), "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(lines[0].split(" ", 2)[1]), headers, body


def same_answer(
    port: int, method: str, path: str, body: bytes, headers: dict[str, str], volatile: Sequence[str] = ()
) -> dict[str, Any]:
    """Send the request once as is (the fast path takes it) and once with `?via=django` (a query
    string sends it through Django's full stack; the views ignore it). Compare status, body
    (JSON, keys in `volatile` ignored) and headers (Date/Server ignored; X-Request-ID sent)."""
    import json

    fixed = {**headers, "X-Request-ID": "bench-compare-" + secrets.token_hex(4)}
    fast = exchange(port, http_request(method, path, body, fixed))
    slow = exchange(port, http_request(method, path + "?via=django", body, fixed))

    def view(reply: tuple[int, list[tuple[str, str]], bytes]) -> dict[str, Any]:
        status, hdrs, raw = reply
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        if isinstance(parsed, dict):
            parsed = _drop_keys(parsed, set(volatile))
        skip = {"date", "server", "connection", "keep-alive"}
        if volatile:
            skip.add("content-length")
        return {"status": status, "body": parsed, "headers": [(n, v) for n, v in hdrs if n.lower() not in skip]}

    a, b = view(fast), view(slow)
    return {"same": a == b, "fast": a, "django": b}


def _drop_keys(value: Any, keys: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _drop_keys(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_drop_keys(v, keys) for v in value]
    return value


# --- the client --------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    body: bytes
    seconds: float  # from the request's due time (open loop) or its sending (closed loop)
    service: float = 0.0  # from taking a connection to the end of the answer


class _Conn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.connects = 0

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port, limit=2**22)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connects += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.writer is None:
                await self._open()
            assert self.reader is not None and self.writer is not None
            try:
                self.writer.write(request)
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                # A kept-alive connection the server closed meanwhile: retry once on a new one.
                self.close()
                if attempt == 2:
                    raise
                continue
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            body = await self.reader.readexactly(length) if length else b""
            if close:
                self.close()
            return status, body
        raise AssertionError("unreachable")


async def _warm(port: int, request: bytes, n: int) -> None:
    conns = [_Conn(port) for _ in range(8)]

    async def run(conn: _Conn, k: int) -> None:
        for _ in range(k):
            await conn.send(request)

    await asyncio.gather(*(run(c, n // len(conns) + 1) for c in conns))
    for c in conns:
        c.close()


@dataclass
class RunResult:
    sent: int
    replies: list[Reply]
    wall_s: float
    late_starts: int = 0  # requests the client itself could not send within 1 ms of due time
    connects: int = 0
    errors: list[str] = field(default_factory=list)

    def statuses(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for r in self.replies:
            out[r.status] = out.get(r.status, 0) + 1
        return out


@contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """The client's own garbage collector off while it measures: a full collection over the
    tens of thousands of replies it keeps stalls its event loop for tens of milliseconds,
    which would be counted as the server's latency (requests are timed from their due time)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def fixed_rate(
    port: int,
    requests: Callable[[int], bytes],
    *,
    rate: float,
    duration: float,
    connections: int = 32,
    keep_bodies: bool = False,
) -> RunResult:
    """Send request(i) at start + i/rate for `duration` seconds over at most `connections`
    concurrent connections; latency of each from its due time to the end of its reply."""
    with _no_gc_pauses():
        return asyncio.run(_fixed_rate(port, requests, rate, duration, connections, keep_bodies))


async def _fixed_rate(
    port: int, requests: Callable[[int], bytes], rate: float, duration: float, connections: int, keep_bodies: bool
) -> RunResult:
    loop = asyncio.get_running_loop()
    idle: asyncio.Queue[_Conn] = asyncio.Queue()
    pool = [_Conn(port) for _ in range(connections)]
    for conn in pool:
        await conn._open()
        idle.put_nowait(conn)
    total = int(rate * duration)
    replies: list[Reply] = []
    errors: list[str] = []
    tasks: set[asyncio.Task[None]] = set()
    late = 0

    async def one(i: int, due: float) -> None:
        conn = await idle.get()
        try:
            began = loop.time()
            status, body = await conn.send(requests(i))
            end = loop.time()
            replies.append(Reply(status, body if keep_bodies else b"", end - due, end - began))
        except Exception as exc:  # counted, not fatal: the run goes on at its rate
            errors.append(f"{type(exc).__name__}: {exc}")
            conn.close()
        finally:
            idle.put_nowait(conn)

    start = loop.time() + 0.05
    i = 0
    while i < total:
        now = loop.time()
        while i < total and start + i / rate <= now:
            due = start + i / rate
            if now - due > 0.001:
                late += 1
            task = loop.create_task(one(i, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if i < total:
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
    if tasks:
        await asyncio.wait(tasks, timeout=60)
    wall = loop.time() - start
    for conn in pool:
        conn.close()
    return RunResult(total, replies, wall, late, sum(c.connects for c in pool), errors)


def closed_loop(
    port: int, requests: Callable[[int], bytes | None], *, clients: int, duration: float, keep_bodies: bool = True
) -> RunResult:
    """`clients` concurrent loops; each takes the next request number and sends request(i)
    until `duration` has passed or request(i) is None."""
    with _no_gc_pauses():
        return asyncio.run(_closed_loop(port, requests, clients, duration, keep_bodies))


async def _closed_loop(
    port: int, requests: Callable[[int], bytes | None], clients: int, duration: float, keep_bodies: bool
) -> RunResult:
    loop = asyncio.get_running_loop()
    replies: list[Reply] = []
    errors: list[str] = []
    counter = iter(range(10**12))
    start = loop.time()
    stop = start + duration
    sent = 0
    conns = [_Conn(port) for _ in range(clients)]

    async def client(conn: _Conn) -> None:
        nonlocal sent
        while loop.time() < stop:
            request = requests(next(counter))
            if request is None:
                return
            began = loop.time()
            sent += 1
            try:
                status, body = await conn.send(request)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                continue
            replies.append(Reply(status, body if keep_bodies else b"", loop.time() - began))

    await asyncio.gather(*(client(c) for c in conns))
    wall = loop.time() - start
    for conn in conns:
        conn.close()
    return RunResult(sent, replies, wall, 0, sum(c.connects for c in conns), errors)


def latency_ms(replies: list[Reply], field: str = "seconds") -> dict[str, Any]:
    """p50/p90/p95/p99/p99.9/max in milliseconds (nearest rank) of Reply.<field>."""
    values = sorted(getattr(r, field) * 1000 for r in replies)
    if not values:
        return {"n": 0}

    def pct(p: float) -> float:
        rank = max(1, min(len(values), int(-(-len(values) * p // 100))))
        return round(values[rank - 1], 3)

    return {
        "n": len(values),
        "p50": pct(50),
        "p90": pct(90),
        "p95": pct(95),
        "p99": pct(99),
        "p99_9": pct(99.9),
        "max": round(values[-1], 3),
        "mean": round(sum(values) / len(values), 3),
    }


class CpuSampler:
    """CPU used by groups of processes (and by the whole machine) over a measured span.

    Each group is a function returning its PIDs now; they are listed again every half second,
    so processes that start during the span (a database backend replacing one closed for
    age) are counted from zero and those that end keep what they had used when last seen."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.seen: dict[str, dict[int, list[float]]] = {name: {} for name in groups}  # pid -> [first, last]
        self._stop = threading.Event()

    @staticmethod
    def _proc_cpu(pid: int) -> float | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    @staticmethod
    def _machine() -> tuple[float, float]:
        parts = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        values = [int(v) for v in parts]
        idle = values[3] + values[4]
        return (sum(values) - idle) / os.sysconf("SC_CLK_TCK"), sum(values) / os.sysconf("SC_CLK_TCK")

    def _sample(self, first: bool) -> None:
        for name, pids in self.groups.items():
            seen = self.seen[name]
            for pid in pids():
                cpu = self._proc_cpu(pid)
                if cpu is None:
                    continue
                if pid in seen:
                    seen[pid][1] = cpu
                else:
                    seen[pid] = [cpu if first else 0.0, cpu]

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._sample(first=False)

    def __enter__(self) -> CpuSampler:
        self.started = time.monotonic()
        self._sample(first=True)
        self.machine_before = self._machine()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(first=False)
        wall = time.monotonic() - self.started
        busy, _ = self._machine()
        used = {name: sum(last - first for first, last in seen.values()) for name, seen in self.seen.items()}
        self.result = {
            "wall_s": round(wall, 2),
            **{f"{name}_cores": round(used[name] / wall, 2) for name in self.groups},
            "machine_busy_cores": round((busy - self.machine_before[0]) / wall, 2),
        }
        # What other processes (not the server, its databases or this client) used meanwhile.
        self.result["other_cores"] = round(max(0.0, (busy - self.machine_before[0] - sum(used.values())) / wall), 2)


def machine_busy(seconds: float = 1.0) -> float:
    """Cores busy over the next `seconds` (all processes)."""
    a = CpuSampler._machine()
    time.sleep(seconds)
    b = CpuSampler._machine()
    return (b[0] - a[0]) / seconds


def wait_quiet(limit: float = 0.35, max_wait: float | None = None, say: Callable[[str], None] = print) -> float:
    """Wait (up to max_wait s, default $BENCH_QUIET_WAIT or 30) until the machine is nearly
    idle (<= `limit` cores busy): on a shared machine a benchmark measured beside someone's
    test run measures that run too. Returns the load seen last (reported with the figures)."""
    if max_wait is None:
        max_wait = float(os.environ.get("BENCH_QUIET_WAIT", "30"))
    deadline = time.monotonic() + max_wait
    busy = machine_busy()
    if busy > limit:
        say(f"machine busy ({busy:.2f} cores in use by other processes); waiting up to {max_wait:.0f} s")
    while busy > limit and time.monotonic() < deadline:
        busy = machine_busy(2.0)
    return round(busy, 2)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def self_pids() -> list[int]:
    return [os.getpid()]


def postgres_pids() -> list[int]:
    """The postmaster of DATABASE_URL (embedded: its socket folder is the data folder) and
    its children, read now (backends started later are not included)."""
    from urllib.parse import parse_qs, urlparse

    host = parse_qs(urlparse(os.environ.get("DATABASE_URL", "")).query).get("host", [""])[0]
    pidfile = Path(host) / "postmaster.pid"
    if not host or not pidfile.exists():
        return []
    postmaster = int(pidfile.read_text().split("\n", 1)[0])
    return [postmaster, *_children(postmaster)]


def redis_pids() -> list[int]:
    url = os.environ.get("REDIS_URL", "")
    if not url.startswith("unix://"):
        return []
    pidfile = Path(url[len("unix://") :]).parent / "redis.pid"
    return [int(pidfile.read_text())] if pidfile.exists() else []


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


if __name__ == "__main__":  # pragma: no cover
    print(__doc__)
    sys.exit(0)
