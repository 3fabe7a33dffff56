"""Shared helpers of the benchmarks under bench/ (not a benchmark itself: its name starts with _).

Each benchmark is run by `make bench` as
`.venv/bin/python -m saasops.devstack exec --profile=bench -- .venv/bin/python bench/<name>.py`,
so DATABASE_URL / REDIS_URL point at the embedded servers of the `bench` profile
(data in .devdata/bench/, kept between runs) unless they were set beforehand.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Tenants the benchmarks make are named bench-NNNN (the standing population) and
# benchx-<run>-NN (the measured extra ones, deleted again at the end).
POPULATION_PREFIX = "bench-"


def django_setup() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saasops.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def say(message: str) -> None:
    print(f"bench | {message}", flush=True)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without floats
    return ordered[int(rank) - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 4),
        "p95": round(percentile(values, 95), 4),
        "max": round(max(values), 4),
        "mean": round(statistics.fmean(values), 4),
    }


def machine() -> dict[str, Any]:
    def sh(cmd: str) -> str:
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return ""

    model = sh("lscpu | grep 'Model name' | head -1 | cut -d: -f2-").strip()
    mem = sh("free -b | awk '/^Mem:/ {print $2}'")
    return {
        "nproc": int(sh("nproc") or 0),
        "cpu_model": model,
        "ram_gib": round(int(mem) / 2**30, 1) if mem.isdigit() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def postgres_version() -> str:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        return str(cur.fetchone()[0])


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "benchmark": name,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        # Other work on the machine skews timings: the 1-minute load average at the end.
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        **data,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    say(f"results written to {path.relative_to(ROOT)}")
    return path


class Timer:
    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
