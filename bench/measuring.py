"""What the benchmarks measure with: CPU time of processes (and of the Postgres backends
serving a database) from ``/proc``, percentiles, and ``wrk`` runs of ``bench/wrk/post_run.lua``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().parent / "wrk" / "post_run.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> tuple[int, int]:
    """``utime`` and ``stime`` of a process (all its threads), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)


def db_backend_ticks(database: str | None) -> dict[int, int]:
    """CPU ticks of each local Postgres backend serving ``database`` (by process title,
    ``postgres: 15/main: <user> <database> <host> ...``); empty for None."""
    if database is None:
        return {}
    needle = f" {database} ".encode()
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            title = Path(entry.path, "cmdline").read_bytes()
            if title.startswith(b"postgres: ") and needle in title:
                ticks[int(entry.name)] = sum(cpu_ticks(int(entry.name)))
    return ticks


@dataclass
class CpuWindow:
    """Server CPU time and wall time between ``start`` and ``stop``; with ``database``, also
    the CPU time of the local Postgres backends serving it (``db_s``)."""

    pid: int
    database: str | None = None
    user_s: float = 0.0
    sys_s: float = 0.0
    wall_s: float = 0.0
    db_s: float | None = None
    _t0: float = 0.0
    _ticks0: tuple[int, int] = (0, 0)
    _db0: dict[int, int] = field(default_factory=dict)

    def start(self) -> CpuWindow:
        self._db0 = db_backend_ticks(self.database)
        self._ticks0, self._t0 = cpu_ticks(self.pid), time.monotonic()
        return self

    def stop(self) -> CpuWindow:
        user, system = cpu_ticks(self.pid)
        self.wall_s = time.monotonic() - self._t0
        self.user_s = (user - self._ticks0[0]) / CLK_TCK
        self.sys_s = (system - self._ticks0[1]) / CLK_TCK
        if self.database is not None:
            db1 = db_backend_ticks(self.database)  # backends gone by now are not counted
            self.db_s = sum(t - self._db0.get(pid, 0) for pid, t in db1.items()) / CLK_TCK
        return self

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def utilisation(self) -> str:
        if self.wall_s <= 0:
            return "-"
        return (
            f"{100 * self.cpu_s / self.wall_s:.0f}% "
            f"(usr {100 * self.user_s / self.wall_s:.0f}, sys {100 * self.sys_s / self.wall_s:.0f})"
        )


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    codes: dict[str, int]
    socket_errors: dict[str, int]
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    def count(self, prefix: str) -> int:
        return sum(n for key, n in self.codes.items() if key.startswith(prefix))

    def others(self, ok_prefix: str) -> str:
        """The responses that are not ``ok_prefix`` and the socket errors, or "none"."""
        bad = {k: n for k, n in self.codes.items() if not k.startswith(ok_prefix)}
        bad.update({k: n for k, n in self.socket_errors.items() if n})
        return ", ".join(f"{k}: {n}" for k, n in sorted(bad.items())) or "none"


def run_wrk(
    url: str,
    *,
    seconds: int,
    connections: int,
    body: dict[str, Any],
    rate: float | None = None,
) -> WrkResult:
    threads = min(2, connections)
    env = dict(os.environ, GF_BODY=json.dumps(body), GF_THREADS=str(threads))
    if rate is not None:
        env["GF_RATE"] = f"{rate:g}"
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "120s",
        "-s",
        str(LUA),
        url,
    ]
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=seconds + 180, check=False
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("GFRESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    raw = json.loads(line.removeprefix("GFRESULT "))
    return WrkResult(
        requests=raw["requests"],
        duration_s=raw["duration_us"] / 1e6,
        codes=raw["codes"],
        socket_errors={k: raw[k] for k in ("connect", "read", "write", "timeout")},
        p50_ms=raw["p50_us"] / 1000,
        p95_ms=raw["p95_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
    )
