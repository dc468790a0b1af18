"""Profile the HTTP service under ``wrk`` load with py-spy, and summarise where the time goes.

Starts a server as ``bench/service_bench.py`` does (same settings, same ``--repo``), loads it with
``wrk -t2 -c<connections>`` POSTing ``map_reduce`` runs (``?wait=true`` by default, or without
wait with ``--no-wait``), and after ``--warmup`` seconds records it, once per ``--modes`` entry,
with ``py-spy record --pid <server> --duration <seconds> --format raw --threads --function``:

- ``gil``: ``--gil``, only the thread holding the GIL: where the server's Python CPU goes;
- ``active``: py-spy's default, every thread it does not class as idle; its idle test misses
  many waits (locks, queues, sockets), so this reads as where the threads are, wall-clock;
- ``idle``: ``--idle``, every thread, waiting ones too (locks, sockets, the database).

Each summary lists the top functions by self time (the sampled frame) and by inclusive time
(anywhere on the stack), in percent of the samples, plus the samples per thread.

    .venv/bin/python bench/service_profile.py [--backend sqlite|postgres] [--seconds 10]
        [--modes gil,active] [--repo PATH] [--no-wait] [--top 25] [--raw PREFIX] [--out FILE]

Needs ``py-spy`` (``.venv/bin/pip install py-spy``) and permission to ptrace the server (root).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadserver import fresh_postgres_database, serve  # noqa: E402
from bench.measuring import CpuWindow, run_wrk  # noqa: E402
from bench.service_bench import GRAPH, GRAPH_BODY, git_label, server_env  # noqa: E402

MODES = {"gil": ["--gil"], "active": [], "idle": ["--idle"]}
MODE_TEXT = {
    "gil": "samples of the thread holding the GIL (py-spy --gil): the server's Python CPU",
    "active": "samples of every thread py-spy does not class as idle (its default); its idle"
    " test misses many waits here (lock, queue, socket), so read this as where the threads are",
    "idle": "samples of every thread, waiting ones too (py-spy --idle)",
}
# "function (path/to/file.py:12)" as py-spy writes one frame; the line is dropped when counting.
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


def short_file(path: str, repo: Path) -> str:
    for prefix in (str(repo) + "/", str(ROOT) + "/"):
        if path.startswith(prefix):
            return path[len(prefix) :]
    marker = "site-packages/"
    if marker in path:
        return path.split(marker, 1)[1]
    return re.sub(r"^/usr/lib/python3\.\d+/", "<stdlib>/", path)


def frame_name(frame: str, repo: Path) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    return f"{match['func']} ({short_file(match['file'], repo)})"


def package_of(name: str) -> str:
    """The package a ``function (file)`` belongs to: ``service/<layer>``, else the top-level one
    (py-spy writes files relative to their ``sys.path`` entry: ``sqlalchemy/engine/base.py``)."""
    file = name.rpartition(" (")[2].rstrip(")")
    parts = file.split("/")
    if parts[0] == "service" and len(parts) > 2:
        return "/".join(parts[:2])
    return parts[0] if len(parts) > 1 else file.removesuffix(".py")


def summarise(raw: str, repo: Path, top: int) -> tuple[str, int]:
    """Top functions by self and by inclusive samples of a py-spy ``--format raw`` profile,
    and the number of samples."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    package_counts: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames and frames[0].startswith(("thread ", "process ")):
            threads[frames[0]] += count
            frames = frames[1:]
        names = [frame_name(f, repo) for f in frames if f]
        if not names:
            continue
        total += count
        self_counts[names[-1]] += count
        package_counts[package_of(names[-1])] += count
        for name in set(names):
            incl_counts[name] += count
    if total == 0:
        return "no samples\n", 0

    def table(title: str, counts: Counter[str], what: str = "function (file)") -> list[str]:
        lines = [f"{title} ({total} samples)", f"{'%':>6}  {'samples':>7}  {what}"]
        for name, count in counts.most_common(top):
            lines.append(f"{100 * count / total:6.1f}  {count:7d}  {name}")
        return lines

    out = table("Top functions by SELF time", self_counts)
    out += [""] + table("Top functions by INCLUSIVE time", incl_counts)
    out += [""] + table("SELF time by package", package_counts, "package")[:17]
    out += ["", "Samples per thread"]
    for thread, count in threads.most_common(20):
        out.append(f"{100 * count / total:6.1f}  {count:7d}  {thread}")
    return "\n".join(out) + "\n", total


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--seconds", type=int, default=10, help="py-spy recording time")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of load before recording")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--sample-rate", type=int, default=100, help="py-spy samples/second")
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout to run the server from")
    parser.add_argument("--modes", default="gil,active", help=f"of {','.join(MODES)}")
    parser.add_argument("--no-wait", action="store_true", help="POST without ?wait=true")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", help="keep py-spy's raw profiles as PREFIX.<mode>.txt")
    parser.add_argument("--out", type=Path, help="write the summary here (it is printed too)")
    args = parser.parse_args(argv)
    args.repo = args.repo.resolve()
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or set(args.modes) - set(MODES):
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spy = py_spy()
    label = git_label(args.repo)
    sections: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gf-service-profile-") as tmp:
        workdir = Path(tmp)
        database: contextlib.AbstractContextManager[str] = (
            contextlib.nullcontext(f"sqlite:///{workdir / 'profile.db'}")
            if args.backend == "sqlite"
            else fresh_postgres_database()
        )
        with (
            database as database_url,
            serve(database_url, workdir / "server.log", server_env(), root=args.repo) as server,
            ThreadPoolExecutor(1) as pool,
        ):
            path = f"/graphs/{GRAPH}/runs" + ("" if args.no_wait else "?wait=true")
            load = pool.submit(
                run_wrk,
                server.url + path,
                seconds=args.warmup + len(args.modes) * (args.seconds + 1) + 2,
                connections=args.connections,
                body=GRAPH_BODY,
            )
            time.sleep(args.warmup)
            for mode in args.modes:
                raw_path = Path(f"{args.raw}.{mode}.txt") if args.raw else workdir / f"{mode}.txt"
                cmd = [spy, "record", "--pid", str(server.pid), "--duration", str(args.seconds)]
                cmd += ["--rate", str(args.sample_rate), "--format", "raw", "--threads"]
                cmd += ["--function", "-o", str(raw_path), *MODES[mode]]
                cpu = CpuWindow(server.pid).start()
                subprocess.run(cmd, check=True, capture_output=True)
                cpu.stop()
                text, total = summarise(raw_path.read_text(), args.repo, args.top)
                ticks = args.seconds * args.sample_rate
                held = f"; the GIL was held in {100 * total / ticks:.0f}% of {ticks} sample ticks"
                sections.append(
                    f"== mode {mode}: {MODE_TEXT[mode]}\n"
                    f"server CPU {cpu.utilisation()} over the {args.seconds} s recorded"
                    f"{held if mode == 'gil' else ''}\n$ {' '.join(cmd)}\n\n{text}"
                )
            wrk = load.result()
    expect = "202" if args.no_wait else "200 succeeded"
    header = (
        f"py-spy profile of the server @ {label} ({args.repo}), {args.backend}; load: "
        f"wrk -t2 -c{args.connections} POST {path}: {wrk.count(expect) / wrk.duration_s:.1f} "
        f"ok/s over {wrk.duration_s:.0f} s while profiled (not ok: {wrk.others(expect)})\n"
    )
    summary = header + "\n" + "\n".join(sections)
    print(summary)
    if args.out:
        args.out.write_text(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
