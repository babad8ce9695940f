"""Shared helpers for the benchmarks: a throwaway PostgreSQL database, timing and medians, and a
description of the machine the figures were taken on."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ADMIN_URL = os.environ.get(
    "LEADFLOW_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def quiet_environment() -> None:
    """No analytics or telemetry from Prefect and Great Expectations (no internet here)."""
    for key, value in (("PREFECT_SERVER_ANALYTICS_ENABLED", "false"), ("DO_NOT_TRACK", "1"),
                       ("GX_ANALYTICS_ENABLED", "false")):
        os.environ.setdefault(key, value)


def _sigterm_to_exit() -> None:
    """Turn SIGTERM into SystemExit so `finally` blocks (dropping the database) still run."""
    def handler(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    with contextlib.suppress(ValueError):  # ValueError: not the main thread
        signal.signal(signal.SIGTERM, handler)


@contextmanager
def throwaway_database(prefix: str = "leadflow_bench", migrate: bool = True) -> Iterator[str]:
    """Create `<prefix>_<random>` on the local server, migrate it with Alembic, yield its
    SQLAlchemy URL (postgresql+psycopg://...), and drop it afterwards, also on error."""
    import psycopg

    from models.db import dispose_engines, upgrade_database

    _sigterm_to_exit()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        if migrate:
            upgrade_database(url)
        yield url
    finally:
        dispose_engines()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def psycopg_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class Stopwatch:
    """Seconds per named stage: `with watch("score"): ...`; repeated stages add up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> str:
    """'median (min-max)' with three decimals."""
    if not values:
        return "-"
    return f"{median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def python_speed_ms() -> float:
    """Host speed reference: milliseconds for one million iterations of a plain Python loop
    (best of three). Hosts of the same nominal size differ by 2x here; a figure from another
    host compares through this one."""
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def machine_description(pg_url: str | None = None) -> str:
    """One line: CPUs (usable by this process), CPU model, RAM, Python, OS, PostgreSQL, and
    the Python speed reference."""
    ram = _ram_gb()
    parts = [f"{cpus()} CPUs ({_cpu_model()})", f"{ram:.0f} GB RAM" if ram else "RAM unknown",
             f"Python {platform.python_version()}", f"{platform.system()} {platform.release()}"]
    if pg_url:
        try:
            import psycopg

            with psycopg.connect(psycopg_dsn(pg_url)) as conn:
                version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            parts.append(f"PostgreSQL {version}")
        except Exception:  # pragma: no cover - descriptive only
            pass
    parts.append(f"python_loop_1m_ms={python_speed_ms()}")
    return ", ".join(parts)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu(pid: int) -> tuple[int, str, float] | None:
    """(parent pid, command, CPU seconds) of a process from /proc, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    command = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    # After the command: state, ppid, ..., utime (14th field of the line), stime (15th).
    return int(fields[1]), command, (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def cpu_by_group() -> dict[str, float]:
    """CPU seconds used so far by this process, its descendants (the load worker, site
    workers) and PostgreSQL's processes (every process named postgres: backends, WAL writer,
    checkpointer). Linux only; empty elsewhere. Compare two readings: a process that ended in
    between is not counted."""
    me = os.getpid()
    procs: dict[int, tuple[int, str, float]] = {}
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return {}
    for pid in pids:
        info = _proc_cpu(pid)
        if info is not None:
            procs[pid] = info
    out = {"this process": 0.0, "its workers": 0.0, "PostgreSQL": 0.0}
    for pid, (ppid, command, seconds) in procs.items():
        if pid == me:
            out["this process"] += seconds
        elif command.startswith("postgres"):
            out["PostgreSQL"] += seconds
        else:
            parent = ppid
            while parent > 1 and parent != me and parent in procs:
                parent = procs[parent][0]
            if parent == me:
                out["its workers"] += seconds
    return out


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds per group between two `cpu_by_group()` readings."""
    return {k: after[k] - before.get(k, 0.0) for k in after}


def cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
